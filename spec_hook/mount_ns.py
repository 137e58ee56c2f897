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
        from spec_hook.mount_calls import CLONE_NEWNS, libc

        if libc().setns(fd, CLONE_NEWNS) != 0:
            error = ctypes.get_errno()
            raise ShimError(STAGE, f"setns into pid {state_pid}'s: {os.strerror(error)}")
    finally:
        os.close(fd)
    return True


def writable_root(rootfs_path: str, root: int) -> int:
    """An fd of the same rootfs through which the links and the ld cache can be written, in a
    mount namespace of this process's own. crun makes a ``root.readonly`` rootfs read-only
    before it runs createContainer hooks (runc after them), and the image's links and ld cache
    belong to the rootfs the runtime prepared either way; so when the root's mount is
    read-only, our private copy of it is made writable (the container's own stays read-only).
    The path is opened again in the new namespace (an fd keeps its old mount) and must lead to
    the same directory. ``root`` is returned when nothing had to change."""
    from spec_hook import mount_calls, rootfs

    if not os.statvfs(f"/proc/self/fd/{root}").f_flag & os.ST_RDONLY:
        return root
    try:
        mount_calls.private_namespace()
        again = rootfs.open_root(rootfs_path)
    except OSError as exc:
        raise ShimError(STAGE, f"a writable view of the read-only rootfs: {exc.strerror}") \
            from None
    before, after = os.fstat(root), os.fstat(again)
    if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino):
        os.close(again)
        raise ShimError(STAGE, f"{rootfs_path} changed while the hook ran")
    flags = os.statvfs(f"/proc/self/fd/{again}").f_flag
    keep = (mount_calls.MS_NOSUID if flags & os.ST_NOSUID else 0) | \
        (mount_calls.MS_NODEV if flags & os.ST_NODEV else 0) | \
        (mount_calls.MS_NOEXEC if flags & os.ST_NOEXEC else 0)
    try:
        mount_calls.mount(None, again, None, mount_calls.MS_REMOUNT | mount_calls.MS_BIND | keep)
    except OSError as exc:
        os.close(again)
        raise ShimError(STAGE, f"a writable view of the read-only rootfs: {exc.strerror}") \
            from None
    os.close(root)
    return again

