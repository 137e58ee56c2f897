"""hook.device_cgroup: the OCI device rules as runc applies them, where a process's v1 devices
cgroup is, and the allow rules the standalone hook writes there."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from gpu_core.errors import ShimError
from gpu_core.testing import char_node
from hook import device_cgroup

DOCKER_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
]
"""What dockerd and podman put in linux.resources.devices for an unprivileged container."""
GPU0 = char_node("/dev/nvidia0", 195, 0)
CTL = char_node("/dev/nvidiactl", 195, 255)


@pytest.mark.parametrize(("rules", "expected"), [
    (DOCKER_RULES, False),
    ([{"allow": True, "access": "rwm"}], True),
    ([*DOCKER_RULES, {"allow": True, "type": "c", "major": 195, "minor": 0, "access": "rw"}],
     True),
    ([*DOCKER_RULES, {"allow": True, "type": "c", "major": 195, "minor": -1, "access": "rw"}],
     True),
    ([*DOCKER_RULES, {"allow": True, "type": "c", "major": 195, "minor": 0, "access": "r"}],
     False),
    ([*DOCKER_RULES, {"allow": True, "type": "b", "major": 195, "minor": 0, "access": "rw"}],
     False),
    ([{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 195,
                                         "access": "w"}], False),
    ([{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 195,
                                         "minor": 0, "access": "m"}], True),
    ([], False),
    (["not a rule", {"allow": True, "type": "c", "major": 195, "minor": 0}], True),
])
def test_rules_applied_in_order_decide_read_write_access(rules: list[Any],
                                                         expected: bool) -> None:
    """Later matching rules win per access bit; wildcards match; block rules do not."""
    assert device_cgroup.allows(rules, 195, 0) is expected


def test_missing_lists_only_the_nodes_the_spec_denies() -> None:
    """With docker's rules plus an allow rule for nvidiactl, only /dev/nvidia0 is missing."""
    spec = {"linux": {"resources": {"devices": [
        *DOCKER_RULES, {"allow": True, "type": "c", "major": 195, "minor": 255,
                        "access": "rw"}]}}}
    assert device_cgroup.missing(spec, [GPU0, CTL]) == [GPU0]
    assert device_cgroup.missing({}, [GPU0]) == [GPU0]


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize(("proc_cgroup", "mountinfo", "expected"), [
    ("5:devices:/docker/abc\n0::/\n", MOUNTINFO, "/sys/fs/cgroup/devices/docker/abc"),
    ("5:devices:/\n", MOUNTINFO, "/sys/fs/cgroup/devices/"),
    ("5:devices:/kubepods/pod1/c1\n",
     "36 31 0:33 /kubepods /mnt/dev\\040cg rw - cgroup cgroup rw,devices\n",
     "/mnt/dev cg/pod1/c1"),
    ("0::/system.slice/docker-abc.scope\n", "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 c rw\n",
     None),
])
def test_devices_dir_joins_the_mount_and_the_processs_path(
        proc_cgroup: str, mountinfo: str, expected: Optional[str]) -> None:
    """The devices hierarchy's mount point plus the path below its root; None on cgroup v2."""
    assert device_cgroup.devices_dir(proc_cgroup, mountinfo) == expected


@pytest.mark.parametrize(("proc_cgroup", "mountinfo", "message"), [
    ("5:devices:/a/../../etc\n", MOUNTINFO, "is not a plain absolute path"),
    ("5:devices:/other/c1\n", "36 31 0:33 /kubepods /mnt/d rw - cgroup cgroup rw,devices\n",
     "is outside the hierarchy mounted at /mnt/d"),
    ("5:devices:/docker/abc\n", "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 c rw\n",
     "no cgroup v1 devices hierarchy is mounted here"),
])
def test_devices_dir_refuses_paths_it_cannot_place(proc_cgroup: str, mountinfo: str,
                                                   message: str) -> None:
    """A path with '..', outside the mounted root, or with no hierarchy: a cgroup error."""
    with pytest.raises(ShimError) as caught:
        device_cgroup.devices_dir(proc_cgroup, mountinfo)
    assert caught.value.stage == "cgroup" and message in caught.value.cause


def fake_proc(tmp_path: Path, proc_cgroup: str) -> tuple[Path, Path]:
    """A /proc with pid 42 in the devices cgroup /docker/abc of a hierarchy under tmp_path."""
    proc, devices = tmp_path / "proc", tmp_path / "devices"
    (proc / "42").mkdir(parents=True)
    (proc / "self").mkdir()
    (proc / "42" / "cgroup").write_text(proc_cgroup)
    (proc / "self" / "mountinfo").write_text(
        f"36 31 0:33 / {devices} rw - cgroup cgroup rw,devices\n")
    (devices / "docker" / "abc").mkdir(parents=True)
    (devices / "docker" / "abc" / "devices.allow").write_text("")
    return proc, devices / "docker" / "abc"


def test_grant_writes_one_allow_rule_per_node(tmp_path: Path) -> None:
    """Each node becomes a `c MAJOR:MINOR rw` line in the process's devices.allow."""
    proc, directory = fake_proc(tmp_path, "5:devices:/docker/abc\n")
    assert device_cgroup.grant([GPU0, CTL], 42, str(proc)) == str(directory)
    assert (directory / "devices.allow").read_text() == "c 195:0 rw\nc 195:255 rw\n"


def test_grant_on_cgroup_v2_names_the_nodes_and_the_shim(tmp_path: Path) -> None:
    """No v1 devices controller: a cgroup error naming the nodes and gpu-container-runtime."""
    proc, _ = fake_proc(tmp_path, "0::/docker/abc\n")
    with pytest.raises(ShimError) as caught:
        device_cgroup.grant([GPU0], 42, str(proc))
    assert str(caught.value).startswith("cgroup: the engine did not declare /dev/nvidia0 "
                                        "(195:0) and cgroup v2 has no devices.allow")
    assert "gpu-container-runtime" in caught.value.cause


def test_grant_refuses_a_symlinked_devices_allow(tmp_path: Path) -> None:
    """devices.allow is opened without following a symlink."""
    proc, directory = fake_proc(tmp_path, "5:devices:/docker/abc\n")
    target = tmp_path / "elsewhere"
    target.write_text("")
    (directory / "devices.allow").unlink()
    (directory / "devices.allow").symlink_to(target)
    with pytest.raises(ShimError, match=r"^cgroup: .*devices\.allow: "):
        device_cgroup.grant([GPU0], 42, str(proc))
    assert target.read_text() == ""
