"""The one atomic file writer of the product (config.json, MIG leases, the config cache, the
fast-path entry, CDI specs, engine configs, the metrics files).

A reader sees the old file or the complete new one, never a part, and a crash leaves one of the
two: the data goes to a temporary in the target's directory, created exclusively
(O_CREAT|O_EXCL|O_NOFOLLOW, so nothing planted at its name is opened or followed), given its mode
and owner explicitly (whatever the umask), fsynced, then renamed over the target (a symlink raced
in at the target is replaced, not written through) or, for ``exclusive``, linked in with link(2),
which fails whatever is there, a dangling link included; last the directory is fsynced so the
rename itself survives a crash.

Only ``os`` and ``contextlib`` are imported: this runs on the shim's create path (no tempfile,
which pulls in random and shutil). Failures raise OSError after the temporary is gone; callers
word them in their own stage. A failed directory fsync raises DirectorySyncError: the new file
is in place by then.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Optional

__all__ = ["DirectorySyncError", "create_temp", "sync_directory", "write"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DirectorySyncError(OSError):
    """The file was replaced; syncing its directory failed (crash survival unknown)."""


def create_temp(directory: str, prefix: str, suffix: str = "") -> tuple[int, str]:
    """A new owner-only file in ``directory`` under an unused random name."""
    for _ in range(100):
        path = os.path.join(directory, prefix + os.urandom(6).hex() + suffix)
        try:
            return os.open(path, _FLAGS, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name in {directory}")


def sync_directory(directory: str) -> None:
    """fsync ``directory``: a rename or unlink in it survives a crash only after this."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write(path: str, data: bytes, mode: int, owner: Optional[tuple[int, int]] = None, *,
          temp_name: Optional[str] = None, temp_suffix: str = "", exclusive: bool = False,
          midway: Optional[Callable[[], None]] = None,
          before_replace: Optional[Callable[[], None]] = None) -> None:
    """Replace ``path`` with ``data`` atomically, mode ``mode``, owner ``owner`` (uid, gid;
    None: the caller's).

    ``temp_name``: the temporary's name in the directory (still created exclusively) when a
    reader must recognise it, e.g. the lease store's ``.<id>.<pid>.tmp``; default a random
    hidden name beside the target, ending ``temp_suffix``. ``exclusive``: create ``path``,
    failing (EEXIST) when anything is there. ``midway`` runs once half the data is written and
    synced, ``before_replace`` once the complete temporary is on disk: the fault points tests
    stop a process at.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if temp_name is None:
        fd, temp = create_temp(directory, "." + os.path.basename(path) + ".", temp_suffix)
    else:
        temp = os.path.join(directory, temp_name)
        fd = os.open(temp, _FLAGS, 0o600)
    try:
        try:
            os.fchmod(fd, mode)  # exactly, whatever the umask
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(fd, *owner)
            half = len(data) // 2 if midway is not None else 0
            _write_all(fd, data[:half])
            if midway is not None:
                os.fsync(fd)
                midway()
            _write_all(fd, data[half:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
        if exclusive:
            os.link(temp, path)  # EEXIST whatever is there, a dangling link included
            os.unlink(temp)
        else:
            os.replace(temp, path)  # a link raced in is replaced, not followed
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    try:
        sync_directory(directory)
    except OSError as exc:
        raise DirectorySyncError(exc.errno, exc.strerror, directory) from None
