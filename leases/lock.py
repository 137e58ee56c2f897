"""The lease store's lock: one ``flock`` on ``<lease_dir>/.lock``, held by every change."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator

from gpu_core import private_dirs
from gpu_core.errors import ShimError, one_line
from leases.allocation import STAGE
from leases.files import check_trusted

LOCK_NAME = ".lock"
LOCK_TIMEOUT = 10.0
"""Seconds to wait for the lock: holders keep it for milliseconds, so this means a hung one."""


@contextlib.contextmanager
def locked(directory: str, timeout: float = LOCK_TIMEOUT, create: bool = True
           ) -> Iterator[list[str]]:
    """Hold the store's lock; ``mig: lease store busy`` after ``timeout`` seconds. With
    ``create`` the directory is made ours first (0700 whatever the umask; one someone else made
    or left writable is moved aside: gpu_core.private_dirs), and the notes say what was moved.
    Without it, a directory that is not ours is refused."""
    notes: list[str] = []
    try:
        if create:
            notes = private_dirs.ensure(directory, 0o700, own_root=private_dirs.OWN_ROOT)
        else:
            check_trusted(directory)
    except OSError as exc:
        raise ShimError(STAGE, one_line(f"lease store {directory}: {exc.strerror or exc}")
                        ) from None
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ShimError(STAGE, f"lease store {directory}: lock: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # exactly, whatever the umask
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ShimError(STAGE, f"lease store {directory}: lock: "
                                           f"{exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                raise ShimError(STAGE, f"lease store {directory} busy: its lock was held for "
                                       f"more than {timeout:g}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        yield notes
    finally:
        os.close(fd)  # closing drops the flock
