"""sim_topology.h rendering."""

from __future__ import annotations

import pytest

from simulator import header, topology
from simulator.errors import SimulatorError


@pytest.mark.parametrize(("text", "literal"), [
    ("/tmp/sim", '"/tmp/sim"'),
    ('a"b', '"a\\042b"'),
    ("a\\b", '"a\\134b"'),
    ("é", '"\\303\\251"'),
    ("??=", '"\\077\\077="'),
])
def test_c_string(text: str, literal: str) -> None:
    """Anything outside plain printable ASCII is octal-escaped, so any DIR path is safe in C."""
    assert header.c_string(text) == literal


def test_render_names_dir_versions_and_counts() -> None:
    """The header defines SIM_DIR (read through storage), the versions and the counts."""
    text = header.render(topology.load("dgx-a100-mig"), "/sim")
    for line in ('static const char sim_dir_storage[SIM_DIR_CAPACITY] SIM_UNUSED = "/sim";',
                 "#define SIM_DIR (sim_dir_path())", '#define SIM_DRIVER_VERSION "535.104.05"',
                 "#define SIM_CUDA_VERSION 12020", "#define SIM_GPU_COUNT 8",
                 "#define SIM_MIG_COUNT 9", "#define SIM_UVM_MAJOR 510",
                 "#define SIM_CAPS_MAJOR 509"):
        assert line in text.splitlines()


def test_render_numa_masks() -> None:
    """Node 1's mask covers CPUs 64-127: the second 64-bit word is all ones."""
    text = header.render(topology.load("dgx-a100"), "/sim")
    assert '{1, "64-127", {0x0ULL, 0xffffffffffffffffULL}},' in text


def test_relocate_rewrites_every_placeholder() -> None:
    """Each copy of the placeholder becomes DIR padded with NULs to the same length."""
    placeholder = header.DIR_PLACEHOLDER.encode()
    data = b"ELF" + placeholder + b"\0mid" + placeholder + b"\0end"
    out = header.relocate(data, "/sim/d")
    padded = b"/sim/d".ljust(len(placeholder), b"\0")
    assert out == b"ELF" + padded + b"\0mid" + padded + b"\0end"


@pytest.mark.parametrize(("data", "path", "message"), [
    (b"no placeholder here", "/sim", "no DIR placeholder"),
    (header.DIR_PLACEHOLDER.encode(), "/" + "x" * 1023, "longer than 1023 bytes"),
])
def test_relocate_refuses(data: bytes, path: str, message: str) -> None:
    """A library without the placeholder, or a DIR that does not fit, is an error."""
    with pytest.raises(SimulatorError, match=message):
        header.relocate(data, path)
