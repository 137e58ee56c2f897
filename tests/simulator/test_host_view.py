"""The plan of what ``gpu-ctk simulate run`` shows at the real paths (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import host_view
from simulator.errors import SimulatorError

REAL = "Character devices:\n  1 mem\n  4 tty\n  4 ttyS\n254 ndctl\n\nBlock devices:\n  7 loop\n"
SIMULATED = "Character devices:\n195 nvidia-frontend\n509 nvidia-caps\n\nBlock devices:\n"


def test_library_overlay_puts_the_driver_tree_above_dir_lib() -> None:
    plan = host_view.plan(Path("/sim"))
    lib = next(o for o in plan.overlays if o.target == "/usr/lib/x86_64-linux-gnu")
    assert lib.lowers == ("/sim/driver/usr/lib/x86_64-linux-gnu", "/sim/lib")


def test_binaries_come_from_the_driver_tree() -> None:
    plan = host_view.plan(Path("/sim"))
    assert host_view.Overlay("/usr/bin", ("/sim/driver/usr/bin",)) in plan.overlays


def test_kernel_trees_are_grafted_at_their_real_paths() -> None:
    plan = host_view.plan(Path("/sim"))
    assert {(g.source, g.target) for g in plan.grafts} == {
        ("/sim/dev", "/dev"), ("/sim/proc/driver", "/proc/driver"), ("/sim/sys", "/sys")}


def test_proc_devices_is_merged_not_replaced() -> None:
    plan = host_view.plan(Path("/sim"))
    assert plan.merges == (host_view.Merge("/proc/devices", "/sim/proc/devices"),)


@pytest.mark.parametrize("name", ["a,b", "a:b", "a\\b"])
def test_path_overlayfs_cannot_name_is_refused(name: str) -> None:
    with pytest.raises(SimulatorError, match="cannot be entered"):
        host_view.plan(Path("/tmp") / name)


def test_merged_devices_adds_simulated_majors_in_order() -> None:
    merged = host_view.merged_devices(REAL, SIMULATED)
    assert merged.splitlines()[:7] == ["Character devices:", "  1 mem", "  4 tty", "  4 ttyS",
                                       "195 nvidia-frontend", "254 ndctl", "509 nvidia-caps"]


def test_merged_devices_keeps_the_block_section() -> None:
    assert "Block devices:\n  7 loop\n" in host_view.merged_devices(REAL, SIMULATED)


def test_merged_devices_keeps_the_hosts_line_for_a_taken_major() -> None:
    merged = host_view.merged_devices(REAL, "Character devices:\n254 nvidia-uvm\n")
    assert ("254 ndctl" in merged, "nvidia-uvm" in merged) == (True, False)


def test_the_proc_driver_graft_leaves_out_the_module_params() -> None:
    plan = host_view.plan(Path("/sim"))
    proc = next(g for g in plan.grafts if g.target == "/proc/driver")
    assert proc.omit == frozenset({"nvidia/params"})
