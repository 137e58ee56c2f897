"""Struct layouts per ABI generation against the released library's, and version → generation."""

from __future__ import annotations

from importlib import resources

import pytest

from libnvc_bindings import declarations
from libnvc_bindings.errors import UnsupportedVersionError

# One release from each generation, in the table's column order.
SAMPLES = {"1.0": (1, 0, 2), "1.1-1.4": (1, 4, 0), "1.5-1.14": (1, 14, 6), "1.15+": (1, 17, 8)}

# The released libnvidia-container's layouts, sizes on x86-64; None: the struct does not exist yet.
SIZES = {
    "struct nvc_version": (24, 24, 24, 24),
    "struct nvc_config": (24, 24, 24, 40),
    "struct nvc_device_node": (16, 16, 16, 16),
    "struct nvc_driver_info": (96, 96, 112, 112),
    "struct nvc_device": (56, 88, 88, 88),
    "struct nvc_mig_device": (None, 40, 40, 40),
    "struct nvc_container_config": (56, 56, 56, 56),
}

# Offsets the table lists, plus the ones that follow from its field order.
OFFSETS = [
    ("1.1-1.4", "struct nvc_device", "mig_capable", 56),
    ("1.1-1.4", "struct nvc_device", "mig_caps_path", 64),
    ("1.1-1.4", "struct nvc_device", "mig_devices", 72),
    ("1.5-1.14", "struct nvc_device", "mig_capable", 56),
    ("1.5-1.14", "struct nvc_device", "mig_caps_path", 64),
    ("1.5-1.14", "struct nvc_device", "mig_devices", 72),
    ("1.15+", "struct nvc_device", "mig_capable", 56),
    ("1.15+", "struct nvc_device", "mig_caps_path", 64),
    ("1.15+", "struct nvc_device", "mig_devices", 72),
    ("1.0", "struct nvc_device", "node", 40),
    ("1.0", "struct nvc_config", "uid", 16),
    ("1.0", "struct nvc_config", "gid", 20),
    ("1.15+", "struct nvc_config", "imex", 24),
    ("1.0", "struct nvc_driver_info", "devs", 80),
    ("1.5-1.14", "struct nvc_driver_info", "firmwares", 96),
    ("1.15+", "struct nvc_driver_info", "nfirmwares", 104),
    ("1.1-1.4", "struct nvc_mig_device", "gi", 16),
    ("1.1-1.4", "struct nvc_mig_device", "ci", 20),
    ("1.1-1.4", "struct nvc_mig_device", "ci_caps_path", 32),
    ("1.0", "struct nvc_container_config", "rootfs", 8),
    ("1.0", "struct nvc_container_config", "ldconfig", 48),
    ("1.0", "struct nvc_version", "string", 16),
    ("1.0", "struct nvc_device_node", "id", 8),
]


@pytest.mark.parametrize(
    ("generation", "struct", "size"),
    [(gen, struct, sizes[i]) for struct, sizes in SIZES.items()
     for i, gen in enumerate(SAMPLES) if sizes[i] is not None],
)
def test_struct_size_matches_the_table(generation: str, struct: str, size: int) -> None:
    """Each struct has the table's size in each generation."""
    assert declarations.ffi_for(SAMPLES[generation]).sizeof(struct) == size


@pytest.mark.parametrize(("generation", "struct", "field", "offset"), OFFSETS)
def test_field_offset_matches_the_table(generation: str, struct: str, field: str,
                                        offset: int) -> None:
    """Each listed field sits at its x86-64 offset."""
    assert declarations.ffi_for(SAMPLES[generation]).offsetof(struct, field) == offset


def test_mig_device_is_not_declared_before_1_1() -> None:
    """1.0 has no MIG: asking for its MIG struct fails instead of inventing a layout."""
    with pytest.raises(Exception, match="nvc_mig_device"):
        declarations.ffi_for((1, 0, 0)).sizeof("struct nvc_mig_device")


@pytest.mark.parametrize(
    ("version", "name"),
    [((1, 0, 0), "1.0"), ((1, 0, 9), "1.0"), ((1, 1, 0), "1.1-1.4"), ((1, 4, 9), "1.1-1.4"),
     ((1, 5, 0), "1.5-1.14"), ((1, 14, 6), "1.5-1.14"), ((1, 15, 0), "1.15+"),
     ((1, 40, 0), "1.15+")],
)
def test_generation_boundaries(version: tuple[int, int, int], name: str) -> None:
    """Releases map to the generation whose range holds them; newer minors use the newest."""
    assert declarations.generation_for(version).name == name


@pytest.mark.parametrize("version", [(0, 9, 0), (2, 0, 0), (3, 1, 4)])
def test_unknown_major_version_is_refused(version: tuple[int, int, int]) -> None:
    """Another major version is an error naming the version and what is supported."""
    text = ".".join(map(str, version))
    with pytest.raises(UnsupportedVersionError,
                       match=rf"^version: libnvidia-container {text} is not supported "
                             r"\(supported: major 1"):
        declarations.ffi_for(version)


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [((1, 0, 2), "nvc_driver_mount", "nvc_mig_config_global_caps_mount"),
     ((1, 2, 0), "nvc_device_mig_caps_mount", "nvc_nvcaps_style"),
     ((1, 3, 0), "nvc_nvcaps_device_from_proc_path", "nvc_imex_channel_mount"),
     ((1, 15, 0), "nvc_imex_channel_mount", None)],
)
def test_functions_for_hides_newer_functions(version: tuple[int, int, int], present: str,
                                             absent: str | None) -> None:
    """A release is offered the functions introduced up to its minor version, not later."""
    names = declarations.functions_for(version)
    assert present in names
    assert absent is None or absent not in names


def test_every_design_function_is_listed() -> None:
    """FUNCTIONS names each function the bindings use, once."""
    names = [name for name, _ in declarations.FUNCTIONS]
    assert len(names) == len(set(names)) == 26


def test_every_decls_file_is_used_and_present() -> None:
    """Each generation's files exist, and no file under decls/ is left out of all of them."""
    folder = resources.files("libnvc_bindings") / "decls"
    on_disk = {entry.name for entry in folder.iterdir() if entry.name.endswith(".h")}
    used = {name for gen in declarations.GENERATIONS for name in gen.files} | {"dl.h"}
    assert used == on_disk


def test_ffi_is_shared_within_a_generation() -> None:
    """Two releases of one generation get the same FFI object (declarations parsed once)."""
    assert declarations.ffi_for((1, 5, 0)) is declarations.ffi_for((1, 14, 6))
