"""Paths resolved INSIDE a container's rootfs, never through an image symlink out of it.

Every lookup starts at an O_PATH fd of the rootfs and goes through openat2(2) with
RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: an absolute symlink restarts at the rootfs, ``..`` stops
there, and /proc magic links are refused (the CVE-2025-23267 class: a hook following an image's
``/usr/lib -> /etc`` onto the host). On a kernel without openat2 (before 5.6) a component walk does
the same in user space: each component opened with O_NOFOLLOW, symlinks read and spliced in, ``..``
popped but never above the root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from typing import Optional

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
MAX_SYMLINKS = 40
"""The kernel's own limit (ELOOP) for the fallback walk."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc: Optional[ctypes.CDLL] = None
_have_openat2: Optional[bool] = None


def _syscall() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def open_root(path: str) -> int:
    """An O_PATH fd of the rootfs directory itself (the host path runc computed)."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _openat2(root: int, path: str, flags: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    while True:
        fd = _syscall().syscall(SYS_OPENAT2, ctypes.c_int(root), path.encode(),
                                ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        error = ctypes.get_errno()
        if error not in (errno.EINTR, errno.EAGAIN):  # EAGAIN: a racing rename; retry
            raise OSError(error, os.strerror(error), path)


def _walk(root: int, path: str, flags: int) -> int:
    """The user-space equivalent of RESOLVE_IN_ROOT for kernels without openat2."""
    pending = [part for part in path.split("/") if part]
    stack = [os.dup(root)]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending[:0] = [part for part in target.split("/") if part]
                continue
            stack.append(fd)
        if flags & os.O_PATH:
            final = os.dup(stack[-1])
        else:  # reopen the resolved entry itself (our own fd's link, not the image's)
            final = os.open(f"/proc/self/fd/{stack[-1]}", flags | os.O_CLOEXEC)
        if flags & os.O_DIRECTORY and not stat.S_ISDIR(os.fstat(final).st_mode):
            os.close(final)
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return final
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(root: int, path: str, flags: int = os.O_PATH) -> int:
    """Open ``path`` (a container path, absolute or not) below the rootfs fd ``root``; every
    symlink on the way is resolved inside the root. No O_CREAT: creation goes through the
    resolved parent (``os.mkdir(name, dir_fd=parent)`` and friends)."""
    global _have_openat2
    if "\x00" in path:
        raise OSError(errno.EINVAL, "path contains a NUL byte", path)
    if _have_openat2 is not False:
        try:
            fd = _openat2(root, path, flags)
            _have_openat2 = True
            return fd
        except OSError as exc:
            if exc.errno != errno.ENOSYS or _have_openat2:
                raise
            _have_openat2 = False
    return _walk(root, path, flags)


def split_parent(path: str) -> tuple[str, str]:
    """``/a/b/c`` -> (``/a/b``, ``c``); raise ValueError for a path naming no entry."""
    parent, _, name = path.rstrip("/").rpartition("/")
    if name in ("", ".", "..") or not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path naming an entry")
    return parent or "/", name


def makedirs_in_root(root: int, path: str, mode: int = 0o755) -> int:
    """An O_PATH fd of directory ``path`` in the root, creating missing components; each
    prefix is resolved from the root (so an image's ``/usr/lib64 -> /usr/lib`` means the root's
    /usr/lib) and each new directory made through its in-root parent."""
    current = os.dup(root)
    prefix = ""
    try:
        for name in (part for part in path.split("/") if part):
            prefix += "/" + name
            try:
                next_fd = open_in_root(root, prefix, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                os.mkdir(name, mode, dir_fd=current)
                next_fd = open_in_root(root, prefix, os.O_PATH | os.O_DIRECTORY)
            os.close(current)
            current = next_fd
        return current
    except BaseException:
        os.close(current)
        raise
