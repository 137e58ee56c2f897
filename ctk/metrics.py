"""``gpu-ctk metrics``: Prometheus metrics from our log, for node_exporter's textfile collector.

Each run reads only the log lines appended since the last one (``ctk.log_cursor``), folds them
into running totals (``ctk.metrics_model``) kept in a state file with the cursor, adds gauges
read now (MIG instances by profile from discovery and the lease store, whether the
configuration loads), and writes the exposition (``ctk.metrics_text``) atomically: a temp file
in the same directory, mode 0644, renamed over the target. The state is written first; a run
cut short after it rewrites the same numbers next time, so nothing is counted twice. Nothing
here runs on the start path: the shim and the hook only append their lines.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Optional

from ctk import log_parse, metrics_text
from ctk.log_cursor import Cursor, read_new
from ctk.metrics_model import PROFILE, Key, P, Totals, bounded, labels
from gpu_core import atomic_file
from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.config import Config

STATE = "/var/lib/gpu-container-shim/metrics-state.json"
VERSION = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textfile", metavar="FILE",
                        help="write here (e.g. /var/lib/prometheus/node-exporter/"
                             "gpu-container-shim.prom); default: standard output")
    parser.add_argument("--state", metavar="FILE", default=STATE,
                        help=f"running totals and log position (default {STATE})")
    parser.add_argument("--log", metavar="FILE", help="the log (default: log.file)")
    parser.add_argument("--lease-dir", metavar="DIR", help="default: mig.lease_dir")
    parser.add_argument("--no-discovery", action="store_true",
                        help="skip GPU discovery (no MIG instance totals)")


def write_atomic(path: str, data: str, mode: int) -> None:
    """Readers see the old file or the new one, never a part (temp name hidden from
    node_exporter, which reads only ``*.prom``)."""
    atomic_file.write(path, data.encode("utf-8"), mode)


@contextmanager
def locked(state: str) -> Iterator[None]:
    """One collector at a time per state file (a timer run and a manual one)."""
    os.makedirs(os.path.dirname(os.path.abspath(state)), exist_ok=True)
    fd = os.open(state + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_state(path: str, log: str) -> tuple[Totals, Optional[Cursor]]:
    """The totals and cursor of the last run; fresh ones when there is no state yet. A state
    for another log keeps its totals but reads the new log from its start."""
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except FileNotFoundError:
        return Totals(), None
    except (OSError, ValueError) as error:
        raise ShimError("metrics", f"state {path}: {one_line(str(error))}; remove it to count "
                                   "afresh") from None
    try:
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} state")
        totals = Totals.from_json(document.get("totals"))
        cursor = Cursor.from_json(document.get("log")) if document.get("path") == log else None
    except ValueError as error:
        raise ShimError("metrics", f"state {path}: {error}; remove it to count afresh") from None
    return totals, cursor


def collect(totals: Totals, log: str, cursor: Optional[Cursor]) -> Cursor:
    """Fold the log's new lines into ``totals``; returns where reading stopped."""
    try:
        read = read_new(log, cursor)
    except OSError as error:
        raise ShimError("metrics", f"log {log}: {error.strerror or error}") from None
    if read.rotation:
        totals.inc("log_rotations_total", outcome=read.rotation)
    for line in read.lines:
        totals.add_line(log_parse.parse_line(line))
    totals.expire()
    return read.cursor


def mig_gauges(config: Config, lease_dir: str, discover: bool) -> dict[Key, float]:
    """``mig_instances{profile,state}`` and ``discovery_up``."""
    from leases import files as lease_files
    from leases import host as lease_host
    from leases.allocation import stale_reason

    counts: dict[tuple[str, str], float] = {}
    gauges: dict[Key, float] = {}
    if discover:
        from gpu_core.discovery import discover_from_config

        try:
            inventory = discover_from_config(config)
        except ShimError as error:
            print(f"gpu-ctk: metrics: discovery: {one_line(error.cause)}", file=sys.stderr)
            gauges[(P + "discovery_up", ())] = 0.0
        else:
            gauges[(P + "discovery_up", ())] = 1.0
            for gpu in inventory.gpus:
                for mig in gpu.mig_devices:
                    key = (bounded(mig.profile, PROFILE), "total")
                    counts[key] = counts.get(key, 0.0) + 1
    if lease_dir and os.path.isdir(lease_dir):
        for lease in lease_files.read_all(lease_dir).leases:
            state = "stale" if stale_reason(lease, lease_host.HOST) else "leased"
            for device in lease.devices:
                key = (bounded(device.profile, PROFILE), state)
                counts[key] = counts.get(key, 0.0) + 1
    profiles = {profile for profile, _ in counts}
    for profile in profiles:  # every state of a known profile, zeros included, for the graphs
        for state in ("total", "leased", "stale"):
            gauges[(P + "mig_instances", labels(profile=profile, state=state))] = counts.get(
                (profile, state), 0.0)
    return gauges


def collect_and_render(args: argparse.Namespace, config: Optional[Config], log: str,
                       gauges: dict[Key, float]) -> str:
    """Count the new lines into the state, then the whole exposition text."""
    with locked(args.state):
        totals, cursor = load_state(args.state, log)
        cursor = collect(totals, log, cursor)
        write_atomic(args.state, json.dumps({"version": VERSION, "path": log,
                                             "log": cursor.to_json(),
                                             "totals": totals.to_json()}), 0o600)
    if config is not None:
        lease_dir = args.lease_dir or config.mig.lease_dir
        gauges.update(mig_gauges(config, lease_dir, not args.no_discovery))
    gauges[(P + "collector_last_run_timestamp_seconds", ())] = float(int(time.time()))
    return metrics_text.render(totals, gauges)


def run(args: argparse.Namespace) -> int:
    from gpu_core import config as config_mod

    gauges: dict[Key, float] = {}
    config: Optional[Config] = None
    try:
        config = config_mod.load()
    except ShimError as error:
        print(f"gpu-ctk: metrics: {one_line(str(error))}", file=sys.stderr)
    gauges[(P + "config_valid", ())] = 1.0 if config is not None else 0.0
    log = args.log or (config or config_mod.defaults()).log.file  # unreadable: the default
    if not log:
        raise ShimError("metrics", "log.file is empty: the shim writes no log to count from")
    try:
        text = collect_and_render(args, config, log, gauges)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        raise ShimError("metrics", f"{where}{error.strerror or error}") from None
    if not args.textfile:
        sys.stdout.write(text)
        return 0
    try:
        write_atomic(args.textfile, text, 0o644)
    except OSError as error:
        raise ShimError("metrics", f"--textfile {args.textfile}: "
                                   f"{error.strerror or error}") from None
    return 0
