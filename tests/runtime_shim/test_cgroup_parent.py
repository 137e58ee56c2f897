"""cgroup parent: default engine parents moved under the configured one, pods left alone."""

from __future__ import annotations

import pytest

from runtime_shim.modifiers import cgroup_parent
from runtime_shim.testing import context

PARENT = "cgroup: {parent: ai-workload.slice}\n"

CASES = [
    # (description, systemd driver, current cgroupsPath, expected)
    ("cgroupfs unset", False, None, "/ai-workload.slice/ctr"),
    ("cgroupfs docker default", False, "/docker/abc", "/ai-workload.slice/abc"),
    ("cgroupfs explicit parent kept", False, "/custom/abc", "/custom/abc"),
    ("cgroupfs kubepods kept", False, "/kubepods/besteffort/pod1/abc",
     "/kubepods/besteffort/pod1/abc"),
    ("cgroupfs already under parent", False, "/ai-workload.slice/x", "/ai-workload.slice/x"),
    ("systemd unset", True, None, "ai-workload.slice:gpu:ctr"),
    ("systemd docker default", True, "system.slice:docker:abc", "ai-workload.slice:docker:abc"),
    ("systemd kubepods kept", True, "kubepods-besteffort-pod1.slice:cri-containerd:abc",
     "kubepods-besteffort-pod1.slice:cri-containerd:abc"),
    ("systemd user slice kept", True, "user.slice:x:abc", "user.slice:x:abc"),
]


@pytest.mark.parametrize(("description", "systemd", "current", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_cgroup_parent_whole_spec(description: str, systemd: bool, current: str,
                                  expected: str) -> None:
    """The spec's cgroupsPath is moved only from the engine's default parent."""
    linux = {"namespaces": []} if current is None else {"cgroupsPath": current}
    spec = {"linux": linux}
    result, _ = cgroup_parent.apply(spec, context(PARENT, systemd_cgroup=systemd))
    assert result == {"linux": {**linux, "cgroupsPath": expected}} or (
        current == expected and result is spec)


@pytest.mark.parametrize("systemd", [False, True])
def test_cgroup_parent_is_idempotent(systemd: bool) -> None:
    """A second pass changes nothing."""
    ctx = context(PARENT, systemd_cgroup=systemd)
    once, _ = cgroup_parent.apply({"linux": {}}, ctx)
    assert cgroup_parent.apply(once, ctx)[0] is once


def test_kubernetes_pods_move_when_configured() -> None:
    """cgroup.move_kubernetes_pods lets the parent take pod containers too."""
    ctx = context("cgroup: {parent: ai-workload.slice, move_kubernetes_pods: true}\n")
    spec = {"linux": {"cgroupsPath": "/kubepods/burstable/pod1/abc"}}
    assert cgroup_parent.apply(spec, ctx)[0]["linux"]["cgroupsPath"] == "/ai-workload.slice/abc"


def test_no_parent_configured_changes_nothing() -> None:
    """Without cgroup.parent the spec is returned as is."""
    spec = {"linux": {}}
    assert cgroup_parent.apply(spec, context())[0] is spec
