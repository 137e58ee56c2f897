"""Lease records and host observations for the lease tests (tests/leases)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from gpu_core.testing import gpu_uuid, mig_uuid
from leases.allocation import Holder, Lease, LeasedDevice
from leases.lock import locked
from leases.write import write_lease


class Host:
    """Observations from tables: runtime state present, running pid -> start time."""

    def __init__(self, known: tuple[str, ...] = (), running: Optional[dict[int, int]] = None
                 ) -> None:
        self.known = set(known)
        self.running = running or {}

    def runtime_knows(self, runtime_root: str, container_id: str) -> bool:
        return container_id in self.known

    def process_start(self, pid: int) -> Optional[int]:
        return self.running.get(pid)


def make_lease(cid: str, uuids: tuple[str, ...] = (), pid: int = 100, root: str = "/r"
               ) -> Lease:
    return Lease(holder=Holder(container_id=cid, runtime_root=root, bundle="/b", shim_pid=pid,
                               shim_start=1),
                 devices=tuple(LeasedDevice(uuid=u, profile="1g.10gb", gpu=gpu_uuid(0),
                                            token="mig-1g.10gb") for u in uuids),
                 created=time.time())


def put(directory: Path, record: Lease) -> None:
    """Store ``record`` as the real store writes it (under the lock, atomically)."""
    with locked(str(directory)):
        write_lease(str(directory), record)


def mig(slot: int, gpu: int = 0) -> str:
    return mig_uuid(gpu, slot + 1, 0)
