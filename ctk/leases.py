"""``gpu-ctk leases list|gc``: the node's MIG leases (``leases.files``, ``leases.store``).

``list`` reads without the lock, so it works while containers start; a lease shows ``stale``
when its holder is gone (the next allocation, or ``gc``, reclaims it), a lease file that cannot
be read or trusted shows ``unreadable`` with the reason (it still counts as held), and a temp
file left by a killed writer is reported below the table. ``gc`` takes the lock and reclaims
what is stale; an unreadable file only once its holder is provably gone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional

from leases.allocation import Lease, stale_reason
from leases.salvage import Unreadable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show holder, device, profile and age of each lease")
    listing.add_argument("--json", action="store_true", help="one JSON array, a row per device")
    collect = actions.add_parser("gc", help="reclaim stale leases and leftovers of killed writers")
    for sub in (listing, collect):
        sub.add_argument("--dir", metavar="DIR",
                         help="lease directory (default: mig.lease_dir of the configuration)")


def lease_dir(args: argparse.Namespace) -> str:
    if args.dir:
        return str(args.dir)
    from gpu_core import config as config_mod

    return config_mod.load().mig.lease_dir


def age(seconds: float) -> str:
    """``42s``, ``7m``, ``3h``, ``2d``: the largest whole unit."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def rows(leases: tuple[Lease, ...], now: float,
         reasons: dict[str, Optional[str]]) -> list[dict[str, Any]]:
    """One row per leased device, oldest lease first."""
    result = []
    for lease in sorted(leases, key=lambda item: (item.created, item.container_id)):
        reason = reasons.get(lease.container_id)
        for device in lease.devices:
            result.append({
                "holder": lease.container_id, "device": device.uuid, "profile": device.profile,
                "gpu": device.gpu, "age_s": round(now - lease.created, 1),
                "status": "stale" if reason else "live", "stale_reason": reason or "",
                "request": device.token, "bundle": lease.holder.bundle})
    return result


def unreadable_rows(entries: tuple[Unreadable, ...]) -> list[dict[str, Any]]:
    """One row per device an unreadable lease file holds (``*``: it may hold any): leases fail
    closed, so these count as held (leases.salvage)."""
    result = []
    for entry in entries:
        for device in sorted(entry.devices) if entry.devices is not None else ["*"]:
            result.append({
                "holder": entry.holders[0] if entry.holders else "", "device": device,
                "profile": "", "gpu": "", "age_s": None, "status": "unreadable",
                "stale_reason": "", "reason": f"{entry.shown_name}: {entry.reason}",
                "request": "", "bundle": ""})
    return result


def table(found: list[dict[str, Any]]) -> str:
    heads = ("HOLDER", "DEVICE", "PROFILE", "AGE", "STATUS")
    lines = [(r["holder"], r["device"], r["profile"] or "-",
              "-" if r["age_s"] is None else age(r["age_s"]),
              f"unreadable ({r['reason']})" if r["status"] == "unreadable" else r["status"])
             for r in found]
    widths = [max(len(str(x)) for x in column) for column in zip(heads, *lines)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
                     for line in (heads, *lines))


def run(args: argparse.Namespace) -> int:
    from leases import files as lease_files
    from leases import host as lease_host
    from leases import store as lease_store

    directory = lease_dir(args)
    if args.action == "gc":
        collected = lease_store.gc(directory)
        for item in collected.reclaimed:
            devices = ", ".join(f"{d.uuid} ({d.profile})" for d in item.lease.devices)
            print(f"reclaimed {item.lease.container_id}: {devices}: {item.reason}")
        for name in collected.removed:
            print(f"removed {name}")
        for line in collected.kept:
            print(f"gpu-ctk: leases: kept {line}", file=sys.stderr)
        if not collected.reclaimed and not collected.removed:
            print(f"nothing to reclaim in {directory}")
        return 0
    snapshot = lease_files.read_all(directory)
    reasons = {lease.container_id: stale_reason(lease, lease_host.HOST)
               for lease in snapshot.leases}
    found = rows(snapshot.leases, time.time(), reasons) + unreadable_rows(snapshot.untrusted)
    if args.json:
        print(json.dumps(found, indent=1))
    elif found:
        print(table(found))
    else:
        print(f"no MIG leases in {directory}")
    for problem in snapshot.problems:
        print(f"gpu-ctk: leases: {problem}", file=sys.stderr)
    return 0
