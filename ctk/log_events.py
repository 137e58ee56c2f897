"""What one line of our log says about a container start, for ``gpu-ctk metrics`` and ``stats``.

The lines are the shim's per-create line (runtime_shim/main.py ``prepare``; the launcher's fast
path writes the same with ``path=fast``), its error line (``error_stage``), and the hook's
events (hook/main.py: ``readiness``, ``retry``, ``mounted``, ``done``, ``error``). Pure: fields
in, an ``Event`` (or None for a line that is none of these) out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

SHIM_COMMANDS = ("create", "run")
SHIM_PHASES = ("load", "request", "discovery", "modifiers", "readiness", "write")
"""``<phase>_ms`` fields of the shim's create line, in the order the work happens (``readiness``
only in spec mode: README §Spec mode)."""
LIBRARY_STEPS = ("initialization", "container", "detection", "mount", "ldcache")
"""``<step>_ms`` fields of the hook's ``mounted`` line: each libnvidia-container stage."""
HOOK_EVENTS = ("readiness", "retry", "mounted", "done", "error")

RETRY_MESSAGE = re.compile(r"^(?P<stage>[A-Za-z][\w-]*): attempt (?P<attempt>\d+)/(?P<of>\d+) "
                           r"failed: (?P<cause>.*); retrying in [\d.]+s$", re.DOTALL)
DEVICE_LABEL = re.compile(r"(?:^|,)(GPU \d{1,4}|MIG \d{1,4}:\d{1,4})(?= \(|,|$)")


@dataclass(frozen=True)
class Event:
    """One start-related line: ``kind`` is ``create`` (the shim) or the hook's event name."""

    kind: str
    cid: str
    time: str
    fields: Mapping[str, str]

    @property
    def failed(self) -> bool:
        return self.kind == "error" or (self.kind == "create" and "error_stage" in self.fields)

    def seconds(self, key: str) -> Optional[float]:
        """A ``*_ms`` field in seconds; None when absent or not a finite non-negative number."""
        try:
            value = float(self.fields[key]) / 1000.0
        except (KeyError, ValueError):
            return None
        return value if 0.0 <= value < 1e9 else None

    def number(self, key: str) -> Optional[int]:
        text = self.fields.get(key, "")
        return int(text) if text.isdigit() and len(text) < 10 else None


def event(fields: Mapping[str, str]) -> Optional[Event]:
    """The start event a parsed line holds, or None."""
    cmd = fields.get("cmd", "")
    common = (fields.get("id", ""), fields.get("time", ""), fields)
    if cmd in SHIM_COMMANDS and ("duration_ms" in fields or fields.get("path") == "fast"
                                 or "error_stage" in fields):
        return Event("create", *common)
    if cmd == "hook" and fields.get("event") in HOOK_EVENTS:
        return Event(fields["event"], *common)
    return None


def phases(item: Event) -> dict[str, float]:
    """``component/phase`` -> seconds this line reports (component ``shim`` or ``hook``)."""
    found: dict[str, Optional[float]] = {}
    if item.kind == "create" and not item.failed and item.fields.get("path") != "fast":
        found = {f"shim/{p}": item.seconds(f"{p}_ms") for p in SHIM_PHASES}
        found["shim/total"] = item.seconds("duration_ms")
    elif item.kind == "readiness":
        found = {"hook/discovery": item.seconds("discovery_ms"),
                 "hook/readiness": item.seconds("waited_ms")}
    elif item.kind == "mounted":
        found = {f"hook/{s}": item.seconds(f"{s}_ms") for s in LIBRARY_STEPS}
        found["hook/library"] = item.seconds("library_ms")
    elif item.kind == "done":
        found = {"hook/total": item.seconds("elapsed_ms")}
    return {name: value for name, value in found.items() if value is not None}


def retry(item: Event) -> Optional[tuple[str, str]]:
    """(library stage, cause) of a ``retry`` line."""
    match = RETRY_MESSAGE.match(item.fields.get("msg", ""))
    return (match["stage"], match["cause"]) if match else None


def waited_devices(item: Event) -> tuple[str, ...]:
    """``GPU 0`` / ``MIG 0:1`` of each device a ``readiness`` line waited for (not ready at the
    first poll; on a timeout, those still not ready at the end)."""
    text = item.fields.get("pending" if item.fields.get("outcome") == "timeout"
                           else "waited_for", "")
    return tuple(match[1] for match in DEVICE_LABEL.finditer(text))


def failure(item: Event) -> tuple[str, str, str]:
    """(component, stage, message) of a failed start's line."""
    component = "shim" if item.kind == "create" else "hook"
    return component, item.fields.get("error_stage", "unknown"), item.fields.get("msg", "")
