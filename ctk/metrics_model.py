"""The running counters and histograms of ``gpu-ctk metrics``, fed one log event at a time.

Pure: ``Totals.add(event)`` folds a line of our log (``ctk.log_events``) into the numbers,
``to_json``/``from_json`` carry them in the state file between runs. Every label value comes
from a small fixed set or is bounded by a pattern (``other`` otherwise), and no container id is
ever a label, so the series stay few whatever the log holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from ctk import log_events
from ctk.log_events import Event
from libnvc_bindings.classification import PERMANENT, TRANSIENT

P = "gpu_container_shim_"
Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
POLLS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
BUCKETS = {P + "phase_duration_seconds": SECONDS, P + "readiness_wait_seconds": SECONDS,
           P + "readiness_polls": POLLS}

PENDING_LIMIT = 1000
PENDING_MAX_AGE = 900.0
"""Seconds after which a hook run with retries but no end line counts as outcome ``unknown``
(the hook's timeout is far shorter: the runtime killed it)."""

STAGE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
PROFILE = re.compile(r"^[0-9a-z][0-9a-z.+_-]{0,31}$")


def bounded(value: str, pattern: re.Pattern[str] = STAGE) -> str:
    return value if pattern.match(value) else "other"


def error_class(cause: str) -> str:
    """The classification table's entry (libnvc_bindings/classification.py) a cause matches:
    a fixed set, so it can be a label; ``unclassified`` otherwise."""
    text = cause.lower()
    return next((p for p in PERMANENT + TRANSIENT if p in text), "unclassified")


def labels(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int]
    """Per bucket, not cumulative; one more than ``bounds`` (the +Inf bucket)."""
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        self.counts[next((i for i, b in enumerate(self.bounds) if value <= b),
                         len(self.bounds))] += 1
        self.total = round(self.total + value, 6)  # ms in the log: no float noise


@dataclass
class Pending:
    """A hook run that retried and has not ended yet: the last retry's class and its time."""

    error_class: str
    time: str


def _epoch(stamp: str) -> Optional[float]:
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    except ValueError:
        return None


@dataclass
class Totals:
    counters: dict[Key, float] = field(default_factory=dict)
    histograms: dict[Key, Histogram] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    latest: str = ""
    """The newest line time seen (ages pending runs without reading the clock)."""

    def inc(self, name: str, by: float = 1.0, **pairs: str) -> None:
        key = (P + name, labels(**pairs))
        self.counters[key] = self.counters.get(key, 0.0) + by

    def observe(self, name: str, value: float, **pairs: str) -> None:
        key = (P + name, labels(**pairs))
        if key not in self.histograms:
            self.histograms[key] = Histogram.empty(BUCKETS[P + name])
        self.histograms[key].observe(value)

    def add_line(self, fields: Mapping[str, str]) -> None:
        """One parsed log line: counted, and folded in when it is a start event."""
        self.inc("log_lines_total")
        item = log_events.event(fields)
        if item is not None:
            self.add(item)

    def add(self, item: Event) -> None:
        if item.time > self.latest:
            self.latest = item.time
        for name, seconds in log_events.phases(item).items():
            component, phase = name.split("/")
            self.observe("phase_duration_seconds", seconds, component=component, phase=phase)
        if item.kind == "create":
            self._create(item)
        elif item.kind == "readiness":
            self._readiness(item)
        elif item.kind == "retry":
            found = log_events.retry(item)
            stage, cause = found if found else ("other", "")
            kind = error_class(cause)
            self.inc("retries_total", stage=bounded(stage), error_class=kind)
            self.pending.pop(item.cid, None)  # re-inserted last: the newest stays longest
            self.pending[item.cid] = Pending(kind, item.time)
            self.expire()
        elif item.kind in ("done", "error"):
            component, stage, _ = log_events.failure(item)
            ok = item.kind == "done"
            self.inc("gpu_starts_total", component=component, outcome="ok" if ok else "error",
                     stage="none" if ok else bounded(stage))
            if not ok and stage == "config":
                self.inc("config_errors_total", component=component)
            retried = self.pending.pop(item.cid, None)
            if retried is not None:
                self.inc("retried_starts_total", error_class=retried.error_class,
                         outcome="recovered" if ok else "failed")

    def _create(self, item: Event) -> None:
        gpu = bounded(item.fields.get("gpu", "unknown"))
        path = "fast" if item.fields.get("path") == "fast" else "python"
        if not item.failed:
            self.inc("creates_total", gpu=gpu, path=path, outcome="ok", stage="none")
            return
        _, stage, _ = log_events.failure(item)
        self.inc("creates_total", gpu=gpu, path=path, outcome="error", stage=bounded(stage))
        if gpu != "no":  # a failed request parse is "unknown" yet almost always a GPU start
            self.inc("gpu_starts_total", component="shim", outcome="error",
                     stage=bounded(stage))
        if stage == "config":
            self.inc("config_errors_total", component="shim")

    def _readiness(self, item: Event) -> None:
        outcome = "timeout" if item.fields.get("outcome") == "timeout" else "ready"
        waited = item.seconds("waited_ms")
        if waited is not None:
            self.observe("readiness_wait_seconds", waited, outcome=outcome)
        polls = item.number("polls")
        if polls is not None:
            self.observe("readiness_polls", float(polls), outcome=outcome)
        for device in log_events.waited_devices(item):
            self.inc("readiness_device_waits_total", device=device, outcome=outcome)

    def expire(self) -> None:
        """Runs that never ended count as ``unknown``; the pending set stays small."""
        now = _epoch(self.latest)
        for cid, run in list(self.pending.items()):
            then = _epoch(run.time)
            old = now is not None and (then is None or now - then > PENDING_MAX_AGE)
            if old or len(self.pending) > PENDING_LIMIT:
                del self.pending[cid]
                self.inc("retried_starts_total", error_class=run.error_class, outcome="unknown")

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": [[name, [list(p) for p in pairs], value]
                         for (name, pairs), value in sorted(self.counters.items())],
            "histograms": [[name, [list(p) for p in pairs], h.counts, h.total]
                           for (name, pairs), h in sorted(self.histograms.items())],
            "pending": {cid: [run.error_class, run.time] for cid, run in self.pending.items()},
            "latest": self.latest,
        }

    @classmethod
    def from_json(cls, document: Any) -> Totals:
        """Raises ValueError naming what is wrong with a state's totals."""
        if not isinstance(document, dict):
            raise ValueError("totals: not an object")
        totals = cls(latest=_text(document.get("latest", ""), "latest"))
        for row in _list(document.get("counters", []), "counters"):
            if not (isinstance(row, list) and len(row) == 3):
                raise ValueError("counters: each row must be [name, labels, value]")
            totals.counters[_key(row[0], row[1])] = _count(row[2], "counters")
        for row in _list(document.get("histograms", []), "histograms"):
            if not (isinstance(row, list) and len(row) == 4):
                raise ValueError("histograms: each row must be [name, labels, counts, sum]")
            name, pairs = _key(row[0], row[1])
            bounds = BUCKETS.get(name)
            counts = _list(row[2], "histograms")
            if bounds is None or len(counts) != len(bounds) + 1:
                raise ValueError(f"histograms: {name!r} is unknown or has the wrong buckets")
            totals.histograms[(name, pairs)] = Histogram(
                bounds, [int(_count(c, "histograms")) for c in counts],
                _count(row[3], "histograms"))
        pending = document.get("pending", {})
        if not isinstance(pending, dict):
            raise ValueError("pending: not an object")
        for cid, run in pending.items():
            if not (isinstance(run, list) and len(run) == 2):
                raise ValueError("pending: each entry must be [class, time]")
            totals.pending[str(cid)] = Pending(_text(run[0], "pending"), _text(run[1], "pending"))
        return totals


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a string")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what}: expected a list")
    return value


def _count(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"{what}: {value!r} is not a non-negative number")
    return float(value)


def _key(name: Any, pairs: Any) -> Key:
    if not (isinstance(name, str) and name.startswith(P)):
        raise ValueError(f"metric name {name!r} is not ours")
    result = []
    for pair in _list(pairs, name):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str)
                                                                   for x in pair)):
            raise ValueError(f"{name}: labels must be [name, value] pairs of strings")
        result.append((pair[0], pair[1]))
    return name, tuple(sorted(result))
