"""Our errors in runc's ``--log`` file, where containerd shows the last one to the user. Our own
log's lines are gpu_core/logfile.py's."""

from __future__ import annotations

import json
from typing import Optional

from gpu_core.logfile import append, quote, quoted, timestamp


def runc_log_line(level: str, message: str, log_format: str) -> str:
    """A line in the format runc itself writes to ``--log``."""
    if log_format == "json":
        return json.dumps({"level": level, "msg": message, "time": timestamp()})
    return f"time={quote(timestamp())} level={quote(level)} msg={quoted(message)}"


def to_runc_log(path: Optional[str], log_format: str, level: str, message: str) -> None:
    if path:
        append(path, runc_log_line(level, message, log_format), engine_file=True)
