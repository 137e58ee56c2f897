"""The rootfs the hook works in, identified by what it is rather than by its path.

At ``prestart``/``createRuntime`` runc has already bind-mounted the rootfs onto itself inside the
container's new mount namespace and not yet pivoted into it. The path in config.json is only a
name: between runc's preparation and the hook's work, a co-tenant who can rename entries along
it could make the rootfs, the bundle or a parent a symlink to a host directory, or another real
directory, or mount something over it in the host's namespace, and the library would then write
there as root.

``pin`` opens the path component by component without following any symlink, once in the host's
namespace and once from the container's root (``/proc/<pid>/root``, which lives in the
container's mount namespace), and accepts only when both lead to the same directory and, in the
container's namespace, that directory is the root of a mount (runc's bind mount; or the
container's root itself, for a runtime that pivoted already). Everything after that goes through
the pinned descriptor (``Pinned.fd_path``), so a later swap of the path changes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from gpu_core.errors import ShimError, one_line

STAGE = "rootfs"
WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RootfsChanged(ShimError):
    """The rootfs path no longer leads to the directory runc prepared."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(STAGE, one_line(
            f"{path}: {why}; it no longer leads to the rootfs runc prepared in the container's "
            f"mount namespace, refusing to touch it", 600))


@dataclass(frozen=True)
class Pinned:
    """An O_PATH descriptor on the rootfs runc mounted in the container's mount namespace."""

    path: str
    """The config.json path it was reached by (for messages and the log)."""
    fd: int

    @property
    def fd_path(self) -> str:
        """A path naming the pinned directory itself, for this process and for children that
        inherit ``fd`` at the same number: no later rename or symlink can redirect it."""
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)


def _is_symlink(name: str, parent: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def walk(start: int, path: str, shown: str) -> tuple[int, int]:
    """(fd of ``path``, fd of its parent) opened from the directory ``start`` one component at a
    time with O_NOFOLLOW: a symlink anywhere along the path is refused. The caller closes both;
    ``start`` stays open."""
    parts = [part for part in path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise RootfsChanged(shown, "not a clean absolute path")
    parent = os.dup(start)
    current = -1
    try:
        for index, name in enumerate(parts):
            try:
                current = os.open(name, WALK_FLAGS, dir_fd=parent)
            except OSError as exc:
                where = "/" + "/".join(parts[: index + 1])
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(name, parent):
                    raise RootfsChanged(shown, f"{where} is a symlink") from None
                raise RootfsChanged(shown, f"{where}: {exc.strerror or exc}") from None
            if index < len(parts) - 1:
                os.close(parent)
                parent, current = current, -1
        return current, parent
    except BaseException:
        os.close(parent)
        raise


def mount_id(fd: int, proc: str = "/proc") -> int:
    """The kernel's id of the mount ``fd`` lies on (``mnt_id`` in fdinfo)."""
    with open(f"{proc}/self/fdinfo/{fd}", encoding="ascii") as info:
        for line in info:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.EINVAL, f"no mnt_id in fdinfo of {fd}")


def identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _in_container(root: int, rootfs: str, host: tuple[int, int]) -> int:
    """The fd of the rootfs as the container's mount namespace has it, or RootfsChanged."""
    if identity(root) == host:
        return os.dup(root)  # the runtime pivoted already: the container's root is the rootfs
    fd, parent = walk(root, rootfs, rootfs)
    try:
        if identity(fd) != host:
            raise RootfsChanged(rootfs, "the host path and the container's mount namespace name "
                                        "different directories (renamed, replaced or mounted "
                                        "over)")
        if mount_id(fd) == mount_id(parent):
            raise RootfsChanged(rootfs, "not the directory runc mounted in the container's mount "
                                        "namespace (a parent was renamed or replaced)")
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(parent)
    return fd


def pin(rootfs: str, pid: int, proc: str = "/proc") -> Pinned:
    """Open and check the rootfs of container process ``pid``; raise ``rootfs: …`` (one line)
    when the path no longer leads to what runc prepared."""
    top = os.open("/", WALK_FLAGS)
    try:
        host, parent = walk(top, rootfs, rootfs)
    finally:
        os.close(top)
    os.close(parent)
    try:
        try:
            root = os.open(f"{proc}/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ShimError(STAGE, f"pid {pid}: cannot open its root: "
                                   f"{exc.strerror or exc}") from None
        try:
            fd = _in_container(root, rootfs, identity(host))
        finally:
            os.close(root)
    finally:
        os.close(host)
    return Pinned(rootfs, fd)


def verify(pinned: Pinned, pid: int, proc: str = "/proc") -> None:
    """Check again, just before the library runs, that the path still leads to the pinned
    rootfs: the simulated library works through the pinned descriptor, but a library that
    resolves the path text itself (in the container's namespace) gets at most this window."""
    again = pin(pinned.path, pid, proc)
    try:
        if identity(again.fd) != identity(pinned.fd):
            raise RootfsChanged(pinned.path, "it now leads to another directory than the one "
                                             "pinned before the readiness wait")
    finally:
        again.close()
