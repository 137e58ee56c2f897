"""Our own log file: one greppable logfmt line per event, appended, never failing a start.

Shared by the shim (runtime_shim/main.py) and the hook; it lives here because the hook must not
import ``runtime_shim`` (design.md §Packages and their direction).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Callable


def timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def quote(value: str) -> str:
    """logfmt quoting: bare when safe, else a JSON string (one line, escapes kept)."""
    if value and all(c.isalnum() or c in "-_./:@+," for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def logfmt(fields: Sequence[tuple[str, str]]) -> str:
    return " ".join(f"{key}={quote(value)}" for key, value in fields)


def append(path: str, line: str) -> None:
    """Append one line; a log we cannot write must never fail a container start."""
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, (line + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


class EventLog:
    """One logfmt line per event to the configured file (nothing when no file is configured),
    each with the time, the fields every line of this process carries, the event, and the
    milliseconds since ``start``."""

    def __init__(self, path: str, common: Sequence[tuple[str, str]], start: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.common = tuple(common)
        self.start = start
        self.clock = clock

    def event(self, event: str, level: str = "info", **fields: str) -> None:
        if not self.path:
            return
        elapsed = f"{(self.clock() - self.start) * 1000:.1f}"
        append(self.path, logfmt([("time", timestamp()), ("level", level), *self.common,
                                  ("event", event), *fields.items(), ("elapsed_ms", elapsed)]))
