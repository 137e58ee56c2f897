"""gpu_core.inventory: PCI bus ids in the forms NVIDIA tools and sysfs write them."""

from __future__ import annotations

import pytest

from gpu_core.inventory import parse_bus_id, sysfs_bus_id

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
