"""mount(2), unshare(2) and fstatfs(2) through ctypes, on ``/proc/self/fd/N`` targets: the
descriptor was opened inside the rootfs (spec_hook.rootfs), so the kernel mounts on exactly
that directory whatever the image's symlinks say."""

from __future__ import annotations

import ctypes
import os
from typing import Optional

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
LOCKED = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
CLONE_NEWNS = 0x00020000
PROC_MAGIC = 0x9FA0

_libc: Optional[ctypes.CDLL] = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def mount(source: Optional[str], target: int, fstype: Optional[str], flags: int,
          data: Optional[str] = None) -> None:
    """mount(2) onto the directory open at fd ``target``."""
    _check(libc().mount(source.encode() if source else None,
                        f"/proc/self/fd/{target}".encode(),
                        fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                        data.encode() if data else None))


def private_namespace() -> None:
    """A mount namespace of our own whose mounts propagate nowhere."""
    _check(libc().unshare(CLONE_NEWNS))
    _check(libc().mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None))


def fs_magic(fd: int) -> int:
    """f_type of fstatfs(2) on ``fd``."""
    buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
    _check(libc().fstatfs(fd, buffer))
    return ctypes.c_long.from_buffer(buffer).value
