"""A lease store that takes nothing (``leases.interface.LeaseStore``), for ``gpu-ctk plan``.

It reads the real lease directory without the lock, as ``gpu-ctk leases list`` does, offers
``decide`` what live other containers do not hold, and records the lease a start would take;
it writes, reclaims and releases nothing. A start chooses again under the lock, so what it
reports is what a start would get *now*.
"""

from __future__ import annotations

from typing import Optional

from leases.allocation import Lease, Observer, check_container_id, stale_reason
from leases.files import read_all
from leases.host import HOST
from leases.interface import After, Allocation, Decide, Reclaimed


class DryRunStore:
    """The lease directory ``directory``, read only; ``taken`` holds each lease it would take."""

    dry_run = True

    def __init__(self, directory: str, observer: Observer = HOST) -> None:
        self.directory = directory
        self.observer = observer
        self.taken: list[Lease] = []

    def allocate(self, container_id: str, decide: Decide) -> Allocation:
        """The allocation a start would make now. Leases under ``container_id`` itself are
        left out (a start replaces its own), stale ones of others are reported as what a start
        would reclaim, and files that hold no lease are not counted."""
        check_container_id(container_id)
        others: dict[str, Lease] = {}
        stale: list[Reclaimed] = []
        for lease in read_all(self.directory).leases:
            if lease.container_id == container_id:
                continue
            reason = stale_reason(lease, self.observer)
            if reason is None:
                others[lease.container_id] = lease
            else:
                stale.append(Reclaimed(lease, reason))
        lease = decide(others)
        self.taken.append(lease)
        return Allocation(lease=lease, reclaimed=tuple(stale))

    def release(self, container_id: str, after: After) -> Optional[Lease]:
        """Nothing was taken, so nothing is given back."""
        return None
