"""GPU discovery: pure helpers, library loading, and the real simulated hosts."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from hook.discovery import discover, parse_bus_id, profile_name, sysfs_bus_id
from hook.errors import ShimError
from simulator import profiles

GIB = 1024 ** 3


@pytest.mark.parametrize(("table", "total_mib"), [("a100-80gb", 81920), ("a100-40gb", 40960)])
def test_profile_name_derivation_matches_nvidia_names(table: str, total_mib: int) -> None:
    """Derived <slices>g.<GB>gb names equal NVIDIA's for every A100 profile."""
    for profile in profiles.TABLES[table]:
        suffix = "+me" if profile.name.endswith("+me") else ""
        derived = profile_name(profile.slice_count, profile.memory_mib, total_mib * 1024 ** 2,
                               suffix)
        assert derived == profile.name


def test_profile_name_without_gpu_memory_rounds_instance_memory() -> None:
    """With the GPU's total unknown, the instance's own memory is rounded to GB."""
    assert profile_name(3, 40192, 0) == "3g.39gb"


BUS_IDS = [
    ("nvml long form", "00000000:07:00.0", (0, 7, 0, 0)),
    ("sysfs form", "0000:4e:00.0", (0, 0x4E, 0, 0)),
    ("short form", "4E:00.0", (0, 0x4E, 0, 0)),
    ("other domain and function", "0001:B7:1f.3", (1, 0xB7, 0x1F, 3)),
    ("function out of range", "07:00.8", None),
    ("trailing newline", "07:00.0\n", (0, 7, 0, 0)),
    ("not an address", "gpu0", None),
    ("non-ascii digit", "0\u0663:00.0", None),
]


@pytest.mark.parametrize(("description", "text", "expected"), BUS_IDS,
                         ids=[c[0] for c in BUS_IDS])
def test_parse_bus_id(description: str, text: str, expected: object) -> None:
    """PCI addresses parse in every form NVIDIA tools print; anything else is None."""
    assert parse_bus_id(text) == expected


def test_sysfs_bus_id_lowercases_and_shortens_domain() -> None:
    """NVML's 8-digit upper-case form becomes sysfs' directory name."""
    assert sysfs_bus_id("00000000:BD:00.0") == "0000:bd:00.0"


def test_missing_library_is_discovery_error(tmp_path: Path) -> None:
    """A configured NVML library that cannot be loaded is named in a discovery error."""
    missing = tmp_path / "libnvidia-ml.so.1"
    with pytest.raises(ShimError) as caught:
        discover(str(missing), str(tmp_path), str(tmp_path), str(tmp_path))
    assert caught.value.stage == "discovery"
    assert caught.value.cause.startswith(f"nvml: cannot load {missing}: ")


def test_library_without_nvml_is_discovery_error(tmp_path: Path) -> None:
    """A library lacking NVML's entry points fails naming the call that could not run."""
    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(ShimError) as caught:
        discover(libc, str(tmp_path), str(tmp_path), str(tmp_path))
    assert str(caught.value) == "discovery: nvml: Function Not Found (nvmlInitWithFlags)"
