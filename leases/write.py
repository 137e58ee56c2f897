"""Writing the lease store: one lease file replaced atomically (gpu_core.atomic_file: exclusive
temp file, fsync, rename, fsync of the directory), under the lock the caller holds
(``leases.lock``)."""

from __future__ import annotations

import contextlib
import json
import os

from gpu_core import atomic_file
from gpu_core.errors import ShimError
from leases.allocation import STAGE, Lease
from leases.faults import fault_point
from leases.files import TEMP_SUFFIX, lease_path


def write_lease(directory: str, lease: Lease, faults: bool = False) -> None:
    """Atomically (re)place ``lease``'s file (gpu_core.atomic_file); the caller holds the lock.
    The temporary keeps the ``.<id>.<pid>.tmp`` name leases.files reads back."""
    target = lease_path(directory, lease.container_id)
    temp = os.path.join(directory, f".{lease.container_id}.{os.getpid()}{TEMP_SUFFIX}")
    data = (json.dumps(lease.to_json(), indent=1, sort_keys=True) + "\n").encode()
    midway = (lambda: fault_point("mig-lease-before-commit", faults)) if faults else None
    try:
        unlink(directory, os.path.basename(temp))  # whatever is there (a FIFO would block)
        atomic_file.write(target, data, 0o600, temp_name=os.path.basename(temp), midway=midway)
    except OSError as exc:
        raise ShimError(STAGE, f"lease store {directory}: write {os.path.basename(target)}: "
                               f"{exc.strerror or exc}") from None


def unlink(directory: str, name: str) -> None:
    """Remove ``name`` when it can go; a directory planted at a temp name stays (reported)."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(os.path.join(directory, name))
