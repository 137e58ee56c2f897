"""``gpu-ctk stats``: GPU starts rebuilt from our log and summarised for a person. Pure.

A start is the shim's create line of a GPU container and the hook lines with the same id after
it (a hook without the shim in front — podman hooks.d, ``docker --gpus`` — starts one on its
own). ``summary`` gives what ``table`` prints in 80 columns and ``--json`` prints whole.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ctk import log_events
from ctk.log_events import LIBRARY_STEPS, SHIM_PHASES, Event

PHASES = (*(f"shim/{p}" for p in (*SHIM_PHASES, "total")),
          *(f"hook/{p}" for p in ("discovery", "readiness", *LIBRARY_STEPS, "library", "total")),
          "start/total")
WIDTH = 80


@dataclass
class Start:
    cid: str
    time: str
    phases: dict[str, float] = field(default_factory=dict)
    retries: list[str] = field(default_factory=list)
    """``<stage>: <cause>`` of each retry."""
    polls: int = 0
    waited_for: tuple[str, ...] = ()
    outcome: str = "running"
    """``ok``, ``failed``, or ``running`` (no end line yet, or the hook was killed)."""
    failure: str = ""
    """``<component> <stage>: <message>`` of a failed start."""

    def total(self) -> float:
        return sum(self.phases.get(k, 0.0) for k in ("shim/total", "hook/total"))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.cid, "time": self.time, "outcome": self.outcome,
                "total_ms": round(self.total() * 1000, 1),
                "phases_ms": {k: round(v * 1000, 1) for k, v in self.phases.items()},
                "retries": self.retries, "readiness_polls": self.polls,
                "waited_for": list(self.waited_for), "failure": self.failure}


def starts(events: Iterable[Event]) -> tuple[list[Start], int]:
    """The GPU starts in log order, and how many creates were not GPU starts."""
    found: list[Start] = []
    open_by_id: dict[str, Start] = {}
    others = 0
    for item in events:
        if item.kind == "create":
            if item.fields.get("gpu") == "no":
                others += 1
                continue
            start = open_by_id[item.cid] = Start(item.cid, item.time)
            found.append(start)
        else:
            start = open_by_id.get(item.cid) or Start(item.cid, item.time)
            if item.cid not in open_by_id:
                open_by_id[item.cid] = start
                found.append(start)
        start.phases.update(log_events.phases(item))
        if item.kind == "retry":
            parsed = log_events.retry(item)
            start.retries.append(": ".join(parsed) if parsed else item.fields.get("msg", ""))
        elif item.kind == "readiness":
            start.polls = item.number("polls") or 0
            start.waited_for = log_events.waited_devices(item)
        elif item.failed:
            component, stage, message = log_events.failure(item)
            start.outcome, start.failure = "failed", f"{component} {stage}: {message}"
            open_by_id.pop(item.cid, None)
        elif item.kind == "done":
            start.outcome = "ok"
            open_by_id.pop(item.cid, None)
    return found, others


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(found: Sequence[Start], others: int, last: int) -> dict[str, Any]:
    chosen = list(found[-last:]) if last > 0 else []
    for start in chosen:
        if "shim/total" in start.phases or "hook/total" in start.phases:
            start.phases["start/total"] = start.total()
    phases = {}
    for name in PHASES:
        values = [s.phases[name] for s in chosen if name in s.phases]
        if values:
            phases[name] = {"count": len(values),
                            "p50_ms": round(percentile(values, 0.5) * 1000, 1),
                            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
                            "max_ms": round(max(values) * 1000, 1)}
    slowest = sorted((s for s in chosen if s.total() > 0), key=lambda s: -s.total())[:5]
    waited = [s for s in chosen if s.polls > 1]
    return {
        "starts": len(chosen),
        "outcomes": dict(Counter(s.outcome for s in chosen)),
        "non_gpu_creates": others,
        "first": chosen[0].time if chosen else "", "last": chosen[-1].time if chosen else "",
        "phases": phases,
        "slowest": [s.to_json() for s in slowest],
        "retries": dict(Counter(r for s in chosen for r in s.retries).most_common()),
        "readiness_waits": {
            "starts": len(waited), "max_polls": max((s.polls for s in waited), default=0),
            "devices": dict(Counter(d for s in waited for d in s.waited_for).most_common())},
        "failures": dict(Counter(s.failure for s in chosen if s.failure).most_common()),
        "recent": [s.to_json() for s in chosen],
    }


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def table(report: dict[str, Any], source: str) -> str:
    """The report in at most 80 columns."""
    outcomes = report["outcomes"]
    where = source if len(source) <= WIDTH - 7 else "…" + source[-(WIDTH - 8):]
    lines = [f"gpu-ctk stats: last {report['starts']} GPU starts", f"  log: {where}",
             cut(f"  {outcomes.get('ok', 0)} ok, {outcomes.get('failed', 0)} failed, "
                 f"{outcomes.get('running', 0)} without an end line; "
                 f"{report['non_gpu_creates']} non-GPU creates", WIDTH)]
    if report["starts"]:
        lines.append(f"  from {report['first']} to {report['last']}")
    if report["phases"]:
        lines += ["", f"{'PHASE':<22}{'COUNT':>7}{'P50 MS':>12}{'P95 MS':>12}{'MAX MS':>12}"]
        lines += [f"{name:<22}{row['count']:>7}{row['p50_ms']:>12.1f}{row['p95_ms']:>12.1f}"
                  f"{row['max_ms']:>12.1f}" for name, row in report["phases"].items()]
    if report["slowest"]:
        lines += ["", f"{'SLOWEST':<26}{'TIME':<10}{'TOTAL MS':>10}{'READY MS':>10}"
                      f"{'RETRIES':>9} OUTCOME"]
        for row in report["slowest"]:
            ready = row["phases_ms"].get("hook/readiness")
            lines.append(f"{cut(row['id'], 25):<26}{row['time'][11:19]:<10}"
                         f"{row['total_ms']:>10.1f}{'-' if ready is None else ready:>10}"
                         f"{len(row['retries']):>9} {row['outcome']}")
    lines += ["", f"retries: {sum(report['retries'].values())}"]
    lines += [cut(f"  {count:>4}  {cause}", WIDTH) for cause, count in report["retries"].items()]
    waits = report["readiness_waits"]
    devices = ", ".join(f"{name} x{count}" for name, count in waits["devices"].items())
    lines.append(cut(f"readiness waits: {waits['starts']} starts waited (max "
                     f"{waits['max_polls']} polls){': ' + devices if devices else ''}", WIDTH))
    lines.append(f"failures: {sum(report['failures'].values())}")
    lines += [cut(f"  {count:>4}  {cause}", WIDTH) for cause, count in report["failures"].items()]
    return "\n".join(lines)


def pick(events: Iterable[Optional[Event]]) -> list[Event]:
    return [item for item in events if item is not None]
