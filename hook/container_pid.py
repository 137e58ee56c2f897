"""Check that the state's pid is a container's process before anything mounts into it.

libnvidia-container joins the mount namespace of the pid it is given and mounts the driver
there. The real library does not check that the namespace is a container's: a state naming a
host process (pid 1, the engine, a recycled pid) would put driver files and device nodes onto the
host itself. A container always has a mount namespace of its own, so one shared with the hook is
refused here, before readiness waits or library calls.
"""

from __future__ import annotations

import os

from gpu_core.errors import ShimError

STAGE = "state"


def namespace_id(path: str) -> tuple[int, int]:
    """(device, inode) of a namespace file: equal pairs are the same namespace."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def check_container_pid(pid: int, proc: str = "/proc") -> None:
    """Raise ``state: pid N: ...`` unless ``pid`` is a live process whose mount namespace is
    not this process's."""
    try:
        theirs = namespace_id(f"{proc}/{pid}/ns/mnt")
    except FileNotFoundError:
        raise ShimError(STAGE, f"pid {pid}: no such process") from None
    except OSError as exc:
        raise ShimError(STAGE, f"pid {pid}: cannot read its mount namespace: "
                               f"{exc.strerror or exc}") from None
    if theirs == namespace_id(f"{proc}/self/ns/mnt"):
        raise ShimError(STAGE, f"pid {pid}: shares the hook's mount namespace, so it is not a "
                               f"container's process; refusing to mount into the host")
