"""hook.container_pid: only a live process in a mount namespace of its own is a container."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from gpu_core.errors import ShimError
from hook.container_pid import check_container_pid


@pytest.fixture
def namespaced_pid() -> Iterator[int]:
    """A process in a new mount namespace, as a container's init is."""
    child = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "30"])
    try:
        for _ in range(200):  # until unshare has exec'd sleep in its new namespace
            if os.readlink(f"/proc/{child.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.01)
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_process_in_its_own_mount_namespace_passes(namespaced_pid: int) -> None:
    """A pid whose mount namespace differs from the hook's is accepted."""
    check_container_pid(namespaced_pid)


def test_a_host_process_is_refused() -> None:
    """A pid sharing the hook's mount namespace (here the hook's own) is a state error naming
    the pid."""
    with pytest.raises(ShimError) as caught:
        check_container_pid(os.getpid())
    assert caught.value.stage == "state"
    assert caught.value.cause.startswith(f"pid {os.getpid()}: shares the hook's mount namespace")


def test_a_process_that_is_gone_is_refused() -> None:
    """A pid with no process behind it is ``no such process``."""
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(ShimError, match=rf"^state: pid {child.pid}: no such process$"):
        check_container_pid(child.pid)
