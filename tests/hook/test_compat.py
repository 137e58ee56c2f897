"""hook.compat: ``nvidia-container-runtime-hook``, our hook standing alone (docker --gpus,
podman hooks.d): device cgroup access for the nodes no engine declared, then the usual mounts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from gpu_core.request import DeviceRequest
from gpu_core.selection import select
from gpu_core.testing import fake_inventory
from hook import compat, device_cgroup
from hook.main import Run
from hook.rootfs_identity import Pinned

DOCKER_SPEC: dict[str, Any] = {"linux": {"resources": {"devices": [
    {"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "access": "m"}]}}}
UNUSED: Any = None
PINNED = Pinned("/rootfs", -1)
"""Never opened: the mount under test is replaced."""
"""Config and budget: the fakes below never read them."""
REQUEST = DeviceRequest(devices=("0",), capabilities=frozenset({"compute", "utility"}))
DECLARED_BY_SHIM: dict[str, Any] = {"linux": {"resources": {"devices": [
    {"allow": False, "access": "rwm"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rw"}
      for major, minor in ((195, 0), (195, 255), (510, 0), (510, 1)))]}}}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record grant and the base mount instead of touching cgroups or a library."""
    seen: list[tuple[str, Any]] = []

    def grant(nodes: Any, pid: int, proc: str = "/proc") -> str:
        seen.append(("grant", ([node.path for node in nodes], pid)))
        return "/sys/fs/cgroup/devices/docker/abc"

    def mount(self: Run, *args: Any) -> None:
        seen.append(("mount", args[-3]))

    monkeypatch.setattr(device_cgroup, "grant", grant)
    monkeypatch.setattr(Run, "mount", mount)
    return seen


def standalone(spec: dict[str, Any]) -> compat.StandaloneRun:
    run = compat.StandaloneRun(0.0)
    run.inventory = fake_inventory(8)
    run.spec = spec
    return run


def test_nodes_the_spec_denies_are_granted_before_mounting(
        calls: list[tuple[str, Any]]) -> None:
    """GPU 0 with docker's rules: its node and the compute control nodes are granted in the
    container's cgroup, then the hook mounts as usual."""
    run = standalone(DOCKER_SPEC)
    selection = select(REQUEST, fake_inventory(8))
    run.mount(UNUSED, UNUSED, REQUEST, selection, 4242, PINNED, "@/sbin/ldconfig")
    assert calls == [
        ("grant", (["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm",
                    "/dev/nvidia-uvm-tools"], 4242)),
        ("mount", 4242)]


def test_nodes_the_shim_declared_need_no_cgroup_write(calls: list[tuple[str, Any]]) -> None:
    """A spec whose rules already allow every node (the shim ran) is only mounted."""
    run = standalone(DECLARED_BY_SHIM)
    selection = select(REQUEST, fake_inventory(8))
    run.mount(UNUSED, UNUSED, REQUEST, selection, 4242, PINNED, "@/sbin/ldconfig")
    assert calls == [("mount", 4242)]


def test_main_runs_the_hook_entry_with_a_standalone_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry point is the hook's own main, given a StandaloneRun."""
    seen: list[Any] = []

    def hook_main(argv: Any, run: Any) -> int:
        seen.append((argv, run))
        return 0

    monkeypatch.setattr(compat, "hook_main", hook_main)
    assert compat.main(["prestart"]) == 0
    assert seen[0][0] == ["prestart"] and isinstance(seen[0][1], compat.StandaloneRun)


def test_console_script_has_the_name_dockerd_looks_for() -> None:
    """pyproject installs hook.compat:main as nvidia-container-runtime-hook."""
    import tomlkit

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project: Any = tomlkit.parse(pyproject.read_text())["project"]
    scripts = project["scripts"]
    assert scripts["nvidia-container-runtime-hook"] == "hook.compat:main"
    assert sys.modules["hook.compat"].COMMAND == "nvidia-container-runtime-hook"
