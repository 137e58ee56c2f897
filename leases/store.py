"""The node's real MIG lease store (``leases.interface.LeaseStore``): allocating under the lock,
noting a container's init process, and collecting stale leases and leftovers.

The directory's layout and how it is read: ``leases.files``; the lock: ``leases.lock``; atomic
writes: ``leases.write``; releasing a holder's lease: ``leases.release``; test-only fault points:
``leases.faults``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Optional

from gpu_core.errors import ShimError
from leases import release as release_mod
from leases.allocation import (
    STAGE,
    Lease,
    LeaseFormatError,
    Observer,
    check_container_id,
    stale_reason,
)
from leases.faults import fault_point
from leases.files import LEASE_SUFFIX, lease_path, read_all, read_lease
from leases.host import HOST
from leases.interface import After, Allocation, Decide, Reclaimed
from leases.lock import LOCK_TIMEOUT, locked
from leases.salvage import as_held
from leases.salvage import stale as unreadable_stale
from leases.write import unlink, write_lease


class FileStore:
    """The lease directory ``directory``; ``faults`` honours the test fault points
    (``leases.faults``: only a simulated host's configuration sets it)."""

    dry_run = False

    def __init__(self, directory: str, faults: bool = False) -> None:
        self.directory = directory
        self.faults = faults

    def allocate(self, container_id: str, decide: Decide) -> Allocation:
        allocation = allocate(self.directory, container_id, decide, faults=self.faults)
        fault_point("mig-lease-after-commit", self.faults)
        return allocation

    def release(self, container_id: str, after: After) -> Optional[Lease]:
        return release_mod.release(self.directory, container_id, after)


def allocate(directory: str, container_id: str, decide: Decide, *, pid: Optional[int] = None,
             observer: Observer = HOST, faults: bool = False,
             timeout: float = LOCK_TIMEOUT) -> Allocation:
    """Under the lock: drop dead writers' temp files, reclaim stale leases, let ``decide`` pick
    from what live others do not hold, and commit its lease for ``container_id`` (replacing
    one this process, or a dead start of the same id, left). An unreadable lease file counts
    as held (leases.salvage): ``decide`` sees its devices as held by its container, and
    one whose devices cannot be read refuses every allocation while it is there."""
    check_container_id(container_id)
    me = os.getpid() if pid is None else pid
    with locked(directory, timeout) as moved:
        snapshot = read_all(directory)
        for name in snapshot.temps:
            unlink(directory, name)
        others: dict[str, Lease] = {}
        reclaimed: list[Reclaimed] = []
        for lease in snapshot.leases:
            reason = stale_reason(lease, observer)
            if lease.container_id == container_id:
                _check_own(lease, me, reason, observer)
                if reason is not None:
                    reclaimed.append(Reclaimed(lease, reason))
                continue
            if reason is None:
                others[lease.container_id] = lease
            else:
                unlink(directory, lease.container_id + LEASE_SUFFIX)
                reclaimed.append(Reclaimed(lease, reason))
        notes = [*(f"lease store: {note}" for note in moved),
                 *(p for p in snapshot.problems if not p.startswith("incomplete write"))]
        for entry in snapshot.untrusted:
            gone = unreadable_stale(entry, observer)
            if gone is not None:
                unlink(directory, entry.name)
                notes.append(f"removed {entry.name}: its holder is gone ({gone})")
                continue
            try:
                others[f"{entry.container_id} (unreadable)"] = as_held(entry, container_id)
            except ValueError as exc:
                raise ShimError(STAGE, str(exc)) from None
        lease = decide(others)
        if lease.container_id != container_id:
            raise ValueError(f"decide returned a lease for {lease.container_id}")
        write_lease(directory, lease, faults)
    return Allocation(lease=lease, reclaimed=tuple(reclaimed), removed_temps=snapshot.temps,
                      problems=tuple(notes))


def _check_own(lease: Lease, me: int, reason: Optional[str], observer: Observer) -> None:
    """A live lease under our own id is ours to replace only when this process took it."""
    h = lease.holder
    if reason is not None or h.shim_pid == me:
        return
    if h.runtime_root and observer.runtime_knows(h.runtime_root, h.container_id):
        raise ShimError(STAGE, f"container {h.container_id} already exists and holds MIG "
                               f"devices {', '.join(d.uuid for d in lease.devices)}")
    raise ShimError(STAGE, f"another start of container {h.container_id} (pid {h.shim_pid}) "
                           "holds its MIG leases")


def record_init(directory: str, container_id: str, pid: int,
                observer: Observer = HOST) -> Optional[Lease]:
    """At prestart: note the container's init process in its lease (one more sign of life)."""
    path = lease_path(directory, container_id)
    if not os.path.exists(path):
        return None
    with locked(directory, create=False):
        try:
            lease = read_lease(path)
        except (OSError, LeaseFormatError):
            return None
        updated = replace(lease, holder=replace(lease.holder, init_pid=pid,
                                                init_start=observer.process_start(pid)))
        write_lease(directory, updated)
        return updated


@dataclass(frozen=True)
class Collected:
    """What ``gc`` removed, and what it kept although it is no lease."""

    reclaimed: tuple[Reclaimed, ...]
    removed: tuple[str, ...]
    """Temp files of dead writers and unreadable lease files whose holder is gone."""
    kept: tuple[str, ...] = ()
    """One line per unreadable lease file kept (its holder may be alive) or leftover that
    could not be removed."""


def _remove(directory: str, name: str) -> Optional[str]:
    """Unlink ``name`` (a symlink itself, never its target); why not, or None."""
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{name}: {exc.strerror or exc}"
    return None


def gc(directory: str, observer: Observer = HOST) -> Collected:
    """Reclaim every stale lease, leftover temp file, and unreadable lease file whose holder is
    provably gone; keep (and say why) every unreadable file whose holder may be alive."""
    if not os.path.isdir(directory):
        return Collected(reclaimed=(), removed=())
    with locked(directory, create=False):
        snapshot = read_all(directory)
        reclaimed = []
        for lease in snapshot.leases:
            reason = stale_reason(lease, observer)
            if reason is not None:
                unlink(directory, lease.container_id + LEASE_SUFFIX)
                reclaimed.append(Reclaimed(lease, reason))
        removed: list[str] = []
        kept: list[str] = []
        gone = [entry.name for entry in snapshot.untrusted
                if unreadable_stale(entry, observer) is not None]
        kept += [f"{entry.describe()}: its holder may be alive; remove it by hand once "
                 f"container {' / '.join(entry.holders)} is gone"
                 for entry in snapshot.untrusted if entry.name not in gone]
        for name in (*snapshot.temps, *gone):
            problem = _remove(directory, name)
            if problem is None:
                removed.append(name)
            else:
                kept.append(f"cannot remove {problem}")
    return Collected(reclaimed=tuple(reclaimed), removed=tuple(removed), kept=tuple(kept))
