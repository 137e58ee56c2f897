"""``gpu-ctk stats [--last N] [--json]``: the recent GPU starts from our log, for a person at a
terminal (``ctk.start_stats`` does the work; this reads the files). The rotated log
(``PATH.1``) is read too when the current one holds fewer than N starts.
"""

from __future__ import annotations

import argparse
import json

from ctk import log_events, log_parse, start_stats
from gpu_core.errors import ShimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=int, default=50, metavar="N",
                        help="how many of the latest GPU starts (default 50)")
    parser.add_argument("--json", action="store_true", help="the whole report as JSON")
    parser.add_argument("--log", metavar="FILE", help="the log (default: log.file)")


def read_events(path: str) -> list[log_events.Event]:
    """The start events of one log file; a missing file has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return start_stats.pick(log_events.event(log_parse.parse_line(line))
                                    for line in stream)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise ShimError("stats", f"log {path}: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    if args.last < 1:
        raise ShimError("stats", f"--last must be at least 1, got {args.last}")
    log = args.log
    if not log:
        from gpu_core import config as config_mod

        log = config_mod.load().log.file
        if not log:
            raise ShimError("stats", "log.file is empty: the shim writes no log")
    events = read_events(log)
    found, others = start_stats.starts(events)
    if len(found) < args.last:
        found, others = start_stats.starts(read_events(log + ".1") + events)
    report = start_stats.summary(found, others, args.last)
    print(json.dumps(report, indent=1) if args.json else start_stats.table(report, log))
    return 0
