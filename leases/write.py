"""Writing the lease store: one lease file replaced atomically (exclusive temp file, fsync,
rename, fsync of the directory), under the lock the caller holds (``leases.lock``)."""

from __future__ import annotations

import contextlib
import json
import os

from gpu_core.errors import ShimError
from leases.allocation import STAGE, Lease
from leases.faults import fault_point
from leases.files import TEMP_SUFFIX, lease_path


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_lease(directory: str, lease: Lease, faults: bool = False) -> None:
    """Atomically (re)place ``lease``'s file; the caller holds the lock."""
    target = lease_path(directory, lease.container_id)
    temp = os.path.join(directory, f".{lease.container_id}.{os.getpid()}{TEMP_SUFFIX}")
    data = (json.dumps(lease.to_json(), indent=1, sort_keys=True) + "\n").encode()
    try:
        unlink(directory, os.path.basename(temp))  # whatever is there (a FIFO would block)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.fchmod(fd, 0o600)  # exactly, whatever the umask
            half = len(data) // 2
            os.write(fd, data[:half])
            if faults:
                os.fsync(fd)
                fault_point("mig-lease-before-commit", faults)
            view = memoryview(data)[half:]
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ShimError(STAGE, f"lease store {directory}: write {os.path.basename(target)}: "
                               f"{exc.strerror or exc}") from None


def unlink(directory: str, name: str) -> None:
    """Remove ``name`` when it can go; a directory planted at a temp name stays (reported)."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(os.path.join(directory, name))
