"""Facts about a container image read from its rootfs on the host, never leaving it.

An image is untrusted: its symlinks may aim anywhere on the host (CVE-2024-0132 class). Paths
are therefore resolved one component at a time from an ``O_PATH`` descriptor of the rootfs,
each opened with ``O_NOFOLLOW``; a symlink met on the way is read and resolved again from the
rootfs (an absolute target) or from its directory (a relative one), and ``..`` never climbs
above the rootfs: the kernel's ``RESOLVE_IN_ROOT``, as libnvidia-container resolves paths in the
container. Nothing is followed by the kernel, so nothing outside the rootfs is looked at.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

MAX_LINKS = 40
"""Symlinks followed per lookup before giving up (Linux's own limit for a path walk)."""

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def lstat_in_root(rootfs: str, path: str, *, follow_last: bool = False
                  ) -> Optional[os.stat_result]:
    """``lstat`` of the image's ``path`` (absolute in the container) with every directory on the
    way resolved inside ``rootfs`` (and, with ``follow_last``, a link at the end too); None when
    it does not exist or cannot be reached (a loop, too many links, a component that is no
    directory)."""
    try:
        root = os.open(rootfs, _DIR_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        return _walk(root, path, follow_last)
    finally:
        os.close(root)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _walk(root: int, path: str, follow_last: bool) -> Optional[os.stat_result]:
    pending = _parts(path)
    stack: list[int] = []  # descriptors of the directories below root we are in
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            here = stack[-1] if stack else root
            if name == "..":
                if stack:  # never above the root
                    os.close(stack.pop())
                continue
            try:
                info = os.stat(name, dir_fd=here, follow_symlinks=False)
            except (OSError, ValueError):
                return None
            if stat.S_ISLNK(info.st_mode) and (pending or follow_last):
                links += 1
                if links > MAX_LINKS:
                    return None
                try:
                    target = os.readlink(name, dir_fd=here)
                except OSError:
                    return None
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                pending[:0] = _parts(target)
                continue
            if not pending:
                return info
            if not stat.S_ISDIR(info.st_mode):
                return None
            try:
                stack.append(os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=here))
            except OSError:
                return None
        return os.stat(stack[-1] if stack else root)
    finally:
        for fd in stack:
            os.close(fd)


def has_debian_version(rootfs: str) -> bool:
    """Whether the image has ``/etc/debian_version`` (links resolved inside the rootfs):
    libnvidia-container then puts the driver's libraries in the multiarch directories
    (``/usr/lib/x86_64-linux-gnu``), else in ``/usr/lib64``."""
    return lstat_in_root(rootfs, "/etc/debian_version", follow_last=True) is not None
