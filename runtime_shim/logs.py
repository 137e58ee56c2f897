"""Where our lines go: runc's ``--log`` file (containerd shows its last error to the user) and
our own log, one greppable logfmt line per create."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Optional


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


def runc_log_line(level: str, message: str, log_format: str) -> str:
    """A line in the format runc itself writes to ``--log``."""
    if log_format == "json":
        return json.dumps({"level": level, "msg": message, "time": timestamp()})
    return f"time={quote(timestamp())} level={level} msg={json.dumps(message)}"


def to_runc_log(path: Optional[str], log_format: str, level: str, message: str) -> None:
    if path:
        append(path, runc_log_line(level, message, log_format))
