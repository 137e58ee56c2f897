"""Releasing a container's MIG lease: the one place a holder's lease file is removed.

``release`` is called at the three moments a lease ends (``leases.interface.After``): the shim's
``delete`` (after the runtime's own delete ran), a ``create`` that failed after taking the lease,
and our hook's ``poststop``. Stale leases of *other* containers are reclaimed elsewhere, by an
allocation or ``gpu-ctk leases gc`` (``leases.store``).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from gpu_core import private_dirs
from leases.allocation import Lease, LeaseFormatError, Observer, stale_reason
from leases.files import lease_path, read_lease, read_salvage
from leases.host import HOST
from leases.interface import After
from leases.lock import locked
from leases.salvage import Unreadable, names_only_its_file
from leases.salvage import stale as unreadable_stale
from leases.write import unlink

DropUnreadable = Callable[[Unreadable], bool]
"""Whether an unreadable lease file of the container being released may go."""


def release(directory: str, container_id: str, after: After, *, observer: Observer = HOST,
            pid: Optional[int] = None) -> Optional[Lease]:
    """Release ``container_id``'s lease as the moment ``after`` allows; the lease removed, or
    None when none was.

    - ``poststop``: the runtime is destroying the container: its lease goes, and an unreadable
      file under its id too when it names no other container;
    - ``delete``: only when the runtime no longer knows the container (a delete that failed, or
      a new start of the same id, keeps it);
    - ``failed-create``: only the lease this process (``pid``) took, never an unreadable file
      (this process never wrote one)."""
    if after == "poststop":
        return remove(directory, container_id)
    if after == "delete":
        return remove(directory, container_id,
                      keep=lambda lease: stale_reason(lease, observer) is None,
                      drop_unreadable=lambda entry: names_only_its_file(entry) and (
                          entry.holder is None or unreadable_stale(entry, observer) is not None))
    me = os.getpid() if pid is None else pid
    if not os.path.exists(lease_path(directory, container_id)):
        return None
    return remove(directory, container_id, keep=lambda lease: lease.holder.shim_pid != me,
                  drop_unreadable=None)


def remove(directory: str, container_id: str,
           keep: Optional[Callable[[Lease], bool]] = None,
           drop_unreadable: Optional[DropUnreadable] = names_only_its_file) -> Optional[Lease]:
    """Remove ``container_id``'s lease (unless ``keep`` says otherwise); the removed lease, or
    None when there was none. A missing store is an empty one; one that is not ours
    (gpu_core.private_dirs) is left alone. An unreadable file under this id goes only when
    ``drop_unreadable`` says so: by default when it names no other container (the one it
    belongs to is being destroyed)."""
    path = lease_path(directory, container_id)
    if not os.path.isdir(directory) or not private_dirs.trusted(directory):
        return None
    with locked(directory, create=False):
        try:
            lease = read_lease(path)
        except FileNotFoundError:
            return None
        except (OSError, LeaseFormatError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if drop_unreadable is not None and drop_unreadable(read_salvage(path, cause)):
                unlink(directory, os.path.basename(path))
            return None
        if keep is not None and keep(lease):
            return None
        unlink(directory, os.path.basename(path))
        return lease
