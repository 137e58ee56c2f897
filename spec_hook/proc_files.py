"""MIG capability files in the container's /proc/driver/nvidia (``--proc-file REL``).

CUDA and nvidia-smi read ``capabilities/gpu<N>/mig/gi<G>/access`` and ``.../ci<C>/access``
(and, for the global capabilities, ``capabilities/mig/config`` and ``mig/monitor``) to find the
minors of the ``/dev/nvidia-caps/nvidia-cap*`` nodes a MIG container was given; our tmpfs over
/proc/driver/nvidia (spec_hook.proc_driver) would hide them, so each one asked for is bound
read-only into it at the same relative path.

Each host file is found from an fd of the host directory, one component at a time with
O_NOFOLLOW (no symlink on the host side either), and cloned as a detached mount (open_tree)
BEFORE the hook enters the container's mount namespace; it is attached later onto an empty file
made inside our tmpfs, reached through the rootfs fd (spec_hook.rootfs). Nothing in the image
is resolved for the source. A kernel without open_tree (before 5.2) keeps the O_PATH fd and
binds it with mount(2), which works where the hook runs in place (createContainer).
"""

import ctypes
import errno
import os
import stat
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from spec_hook import rootfs
from spec_hook.mount_calls import LOCKED, MS_BIND, MS_REMOUNT, libc, mount

PREFIX = "capabilities/"
MAX_LENGTH = 256
MAX_DEPTH = 8
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_EMPTY_PATH = 0x1, os.O_CLOEXEC, 0x1000
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40


class HostFile(NamedTuple):
    """One host file to bind: its relative path and a detached mount of it (``tree``) or, on
    an old kernel, an O_PATH fd of the file."""

    rel: str
    fd: int
    tree: bool


def check(rel: str) -> str:
    """``rel`` when it is a relative path under ``capabilities/``; raise ValueError otherwise."""
    parts = rel.split("/")
    if (not rel.startswith(PREFIX) or len(rel) > MAX_LENGTH or len(parts) > MAX_DEPTH
            or any(part in ("", ".", "..") for part in parts)
            or any(ord(char) < 0x20 or char == "\x7f" for char in rel)):
        raise ValueError(f"--proc-file {rel!r}: expected a path under {PREFIX} without '.', "
                         f"'..', empty components or control characters, at most "
                         f"{MAX_LENGTH} characters")
    return rel


def _walk(directory: int, rel: str) -> int:
    """An O_PATH fd of the regular file ``rel`` below ``directory``, no symlink followed."""
    parts = rel.split("/")
    current = os.dup(directory)
    try:
        for index, name in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
            found = os.open(name, flags, dir_fd=current)
            os.close(current)
            current = found
        if not stat.S_ISREG(os.fstat(current).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return current
    except BaseException:
        os.close(current)
        raise


def _clone(fd: int) -> int:
    """A detached copy (open_tree OPEN_TREE_CLONE) of the file open at ``fd``; -1 on a kernel
    without open_tree."""
    call = libc().syscall
    call.restype = ctypes.c_long
    tree = call(SYS_OPEN_TREE, ctypes.c_int(fd), b"",
                ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH))
    if tree < 0:
        error = ctypes.get_errno()
        if error == errno.ENOSYS:
            return -1
        raise OSError(error, os.strerror(error))
    return int(tree)


def open_host(directory: str, rels: Iterable[str]) -> list[HostFile]:
    """Open each of ``rels`` under the host ``directory`` (before any namespace change); an
    OSError carries the host path that failed."""
    found: list[HostFile] = []
    top = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for rel in dict.fromkeys(rels):
            try:
                fd = _walk(top, rel)
                tree = _clone(fd)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, os.path.join(directory, rel)) from None
            if tree >= 0:
                os.close(fd)
                found.append(HostFile(rel, tree, True))
            else:
                found.append(HostFile(rel, fd, False))
    finally:
        os.close(top)
    return found


def _attach(source: HostFile, target: int) -> None:
    if not source.tree:
        mount(f"/proc/self/fd/{source.fd}", target, None, MS_BIND)
        return
    call = libc().syscall
    call.restype = ctypes.c_long
    if call(SYS_MOVE_MOUNT, ctypes.c_int(source.fd), b"", ctypes.c_int(target), b"",
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def bind(root: int, container_dir: str, files: Sequence[HostFile]) -> None:
    """Bind each of ``files`` read-only at ``container_dir/<rel>`` (a directory of our tmpfs,
    still writable), its parents made there."""
    for host in files:
        parent, _, name = f"{container_dir}/{host.rel}".rpartition("/")
        directory = rootfs.makedirs_in_root(root, parent, 0o555)
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o444, dir_fd=directory))
            target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
        finally:
            os.close(directory)
        try:
            _attach(host, target)
        finally:
            os.close(target)
        # the fd made before the attach names the file beneath; the mount is on a fresh one
        top = rootfs.open_in_root(root, f"{container_dir}/{host.rel}", os.O_PATH)
        try:
            mount(None, top, None, MS_REMOUNT | MS_BIND | LOCKED)
        finally:
            os.close(top)
