"""Run in the container's mount namespace, whichever hook stage the runtime called us from.

runc and crun run ``createContainer`` hooks in the container's mount namespace, after the
spec's mounts and before pivot_root, so the rootfs path still resolves from the host's root.
runc reports its init's pid as seen from inside the container's pid namespace (``1``) and crun
reports ``0``: there the process to compare with is our parent, not ``/proc/<pid>`` (the host's
procfs counts pids of another namespace). A ``prestart``/``createRuntime`` hook (a CDI spec read
by an engine that registers it so) runs in the runtime's namespaces with a host pid; then we
``setns`` into that pid's mount namespace first.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

from gpu_core.errors import ShimError

STAGE = "mount namespace"
CLONE_NEWNS = 0x00020000


def _procfs_pid_of(pid: int) -> Optional[int]:
    """``pid`` (from the state, numbered in OUR pid namespace) as the host's /proc numbers it,
    or None when it cannot be located exactly."""
    if os.readlink("/proc/self") == str(os.getpid()):
        return pid  # /proc counts pids of our own namespace
    if pid == os.getppid():  # runc: its init runs the hook as a child
        with open("/proc/self/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
        return int(fields[1])
    return None


def namespace_of(pid: str) -> tuple[int, int]:
    info = os.stat(f"/proc/{pid}/ns/mnt")
    return info.st_dev, info.st_ino


def enter_for(state_pid: Optional[int]) -> bool:
    """Enter the mount namespace of the state's pid when it differs from ours; True when we
    moved. No pid (crun's 0, a stopped container's none) means the runtime put us in place."""
    if not state_pid:
        return False
    try:
        target = _procfs_pid_of(state_pid)
        if target is None:
            return False  # not ours to find: the runtime's own process tree ran us in place
        fd = os.open(f"/proc/{target}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ShimError(STAGE, f"pid {state_pid}: {exc.strerror or exc}") from None
    try:
        if namespace_of("self") == (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
            return False
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNS) != 0:
            error = ctypes.get_errno()
            raise ShimError(STAGE, f"setns into pid {state_pid}'s: {os.strerror(error)}")
    finally:
        os.close(fd)
    return True
