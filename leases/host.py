"""What the host says about a lease's holder: whether the low-level runtime still knows a
container (its state root), and when a process started (``/proc``). The staleness rule over
these observations is ``leases.allocation.stale_reason``."""

from __future__ import annotations

import os
from typing import Optional


class HostObserver:
    """Staleness facts from this host: the runtime's state root and ``/proc``."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc

    def runtime_knows(self, runtime_root: str, container_id: str) -> bool:
        # runc keeps <root>/<id>/state.json, crun <root>/<id>/status; both create the directory
        # first and remove it last, so the directory is the earliest and latest sign.
        return os.path.isdir(os.path.join(runtime_root, container_id))

    def process_start(self, pid: int) -> Optional[int]:
        try:
            with open(f"{self.proc}/{pid}/stat", "rb") as stream:
                text = stream.read(4096).decode("ascii", "replace")
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) < 20 or fields[0] in ("Z", "X"):
            return None
        try:
            return int(fields[19])
        except ValueError:
            return None


HOST = HostObserver()


def process_start(pid: int) -> Optional[int]:
    """Start time of ``pid`` on this host, None when it is not running."""
    return HOST.process_start(pid)
