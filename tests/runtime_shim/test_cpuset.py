"""What a container can get: systemd slice paths, runc's parent cgroup, and the online CPUs and
effective cpusets read from fake /sys trees for cgroup v1 and v2."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from runtime_shim import cpuset
from runtime_shim.cpuset import Available

SLICES = [("system.slice", "/system.slice"), ("gpu.slice", "/gpu.slice"),
          ("ai-workload.slice", "/ai.slice/ai-workload.slice"),
          ("kubepods-burstable-pod1.slice",
           "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"),
          ("-.slice", "/"), ("", "/"), ("not-a-slice", "/")]


@pytest.mark.parametrize(("name", "path"), SLICES)
def test_slice_path_follows_systemds_dash_nesting(name: str, path: str) -> None:
    """Each dash of a slice name is one level, as systemd lays slices out."""
    assert cpuset.slice_path(name) == path


PARENTS: list[tuple[str, Optional[str], bool, str, str]] = [
    # (description, cgroupsPath, systemd driver, runtime's own cgroup, parent)
    ("cgroupfs absolute", "/ai-workload.slice/c1", False, "/user", "/ai-workload.slice"),
    ("cgroupfs absolute, deep", "/kubepods/burstable/pod1/c1", False, "/",
     "/kubepods/burstable/pod1"),
    ("cgroupfs relative: below the runtime's own", "engine/c1", False, "/user/1",
     "/user/1/engine"),
    ("cgroupfs unset: the runtime's own", None, False, "/user/1", "/user/1"),
    ("cgroupfs escaping upwards stays under the root", "../../../c1", False, "/a", "/"),
    ("systemd slice:prefix:name", "ai-workload.slice:docker:c1", True, "/",
     "/ai.slice/ai-workload.slice"),
    ("systemd nested slice", "kubepods-besteffort.slice:cri-containerd:c1", True, "/",
     "/kubepods.slice/kubepods-besteffort.slice"),
    ("systemd empty slice: system.slice", ":runc:c1", True, "/", "/system.slice"),
    ("systemd unset: system.slice", None, True, "/user", "/system.slice"),
]


@pytest.mark.parametrize(("description", "path", "systemd", "own", "parent"), PARENTS,
                         ids=[p[0] for p in PARENTS])
def test_parent_path_as_runc_resolves_it(description: str, path: Optional[str], systemd: bool,
                                         own: str, parent: str) -> None:
    """The parent cgroup a container lands in, for both of runc's cgroup drivers."""
    assert cpuset.parent_path(path, systemd, own) == parent


def fake_sys(root: Path, cpus: str = "0-7", nodes: str = "0-1") -> Path:
    """A /sys with the online files; cgroup trees are added by the tests."""
    (root / "devices/system/cpu").mkdir(parents=True)
    (root / "devices/system/node").mkdir(parents=True)
    (root / "devices/system/cpu/online").write_text(cpus + "\n")
    (root / "devices/system/node/online").write_text(nodes + "\n")
    return root


def cgroup(directory: Path, version: int, cpus: str, mems: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    names = (("cpuset.cpus.effective", "cpuset.mems.effective") if version == 2
             else ("cpuset.effective_cpus", "cpuset.effective_mems"))
    (directory / names[0]).write_text(cpus + "\n")
    (directory / names[1]).write_text(mems + "\n")


def own(tmp_path: Path, lines: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "cgroup").write_text(lines)
    return proc


def test_v2_parent_cpuset_limits_the_host(tmp_path: Path) -> None:
    """cgroup v2: a slice with AllowedCPUs=2-3 and one memory node narrows the online set."""
    sys_root = fake_sys(tmp_path / "sys")
    root = tmp_path / "cg"
    cgroup(root, 2, "0-7", "0-1")
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    cgroup(root / "ai-workload.slice", 2, "2-3", "1")
    got = cpuset.read_available("/ai-workload.slice/c1", False, str(sys_root), str(root),
                                str(own(tmp_path, "0::/user.slice\n")))
    assert (got.cpus, got.mems) == (frozenset({2, 3}), frozenset({1}))
    assert got.where == ("host online cpus 0-7 mems 0-1, cgroup v2 /ai-workload.slice cpus 2-3 "
                         "mems 1")


def test_v2_missing_parent_inherits_from_its_ancestor(tmp_path: Path) -> None:
    """A slice not created yet (systemd driver) gets its nearest existing ancestor's cpuset."""
    sys_root = fake_sys(tmp_path / "sys")
    root = tmp_path / "cg"
    cgroup(root, 2, "0-5", "0")
    (root / "cgroup.controllers").write_text("cpuset\n")
    cgroup(root / "kubepods.slice", 2, "1-5", "0")
    got = cpuset.read_available("kubepods-burstable.slice:cri-containerd:c1", True,
                                str(sys_root), str(root), str(own(tmp_path, "0::/\n")))
    assert (got.cpus, got.mems) == (frozenset(range(1, 6)), frozenset({0}))
    assert "cgroup v2 /kubepods.slice " in got.where


def test_v1_relative_path_lands_below_the_runtimes_own_cpuset(tmp_path: Path) -> None:
    """cgroup v1, cgroupfs driver, no cgroupsPath: the runtime's own cpuset cgroup is the
    parent; offline CPUs drop out too."""
    sys_root = fake_sys(tmp_path / "sys", cpus="0-3,6-7")
    root = tmp_path / "cg"
    cgroup(root / "cpuset", 1, "0-7", "0-1")
    cgroup(root / "cpuset" / "engine", 1, "3-7", "0")
    got = cpuset.read_available(None, False, str(sys_root), str(root),
                                str(own(tmp_path, "3:cpuset:/engine\n0::/\n")))
    assert (got.cpus, got.mems) == (frozenset({3, 6, 7}), frozenset({0}))


def test_without_a_cpuset_hierarchy_only_online_limits(tmp_path: Path) -> None:
    """No cpuset controller mounted: the online CPUs and nodes are the whole answer."""
    sys_root = fake_sys(tmp_path / "sys", cpus="0-1", nodes="0")
    got = cpuset.read_available(None, False, str(sys_root), str(tmp_path / "none"),
                                str(own(tmp_path, "")))
    assert got == Available(frozenset({0, 1}), frozenset({0}), "host online cpus 0-1 mems 0")


def test_unreadable_online_files_leave_no_limit(tmp_path: Path) -> None:
    """Without the online files and cgroups nothing is known, and nothing limits placement."""
    got = cpuset.read_available(None, False, str(tmp_path / "nosys"), str(tmp_path / "none"),
                                str(own(tmp_path, "")))
    assert (got.cpus, got.mems) == (None, None)


def test_v1_systemd_slice_limits_the_host(tmp_path: Path) -> None:
    """cgroup v1, systemd driver: the slice's directory in the cpuset hierarchy, nested by
    systemd's dash rule, gives the limit (a kubelet's reserved CPUs left out)."""
    sys_root = fake_sys(tmp_path / "sys")
    root = tmp_path / "cg"
    cgroup(root / "cpuset", 1, "0-7", "0-1")
    cgroup(root / "cpuset" / "kubepods.slice" / "kubepods-burstable.slice", 1, "2-7", "0-1")
    got = cpuset.read_available("kubepods-burstable.slice:cri-containerd:c1", True,
                                str(sys_root), str(root), str(own(tmp_path, "3:cpuset:/\n")))
    assert (got.cpus, got.mems) == (frozenset(range(2, 8)), frozenset({0, 1}))
    assert "cgroup v1 /kubepods.slice/kubepods-burstable.slice " in got.where
