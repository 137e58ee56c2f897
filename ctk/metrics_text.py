"""Prometheus text exposition (format 0.0.4) of ``gpu-ctk metrics``: the running totals from
our log (``ctk.metrics_model``) plus gauges read at collection time. Pure: numbers in, text out.
Every metric is listed with HELP and TYPE even before its first sample, so dashboards and alert
rules find the names on a fresh node.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ctk.metrics_model import Histogram, Key, Labels, P, Totals

HELP: dict[str, tuple[str, str]] = {
    "creates_total": ("counter", "Container creates through the shim by GPU request, path "
                      "(fast: the shell launcher alone), outcome and failing stage."),
    "gpu_starts_total": ("counter", "GPU container starts by outcome; a failure by the component "
                         "and stage that failed it (ok: the hook finished)."),
    "phase_duration_seconds": ("histogram", "Time spent per phase of a container start: shim "
                               "load, request, discovery, modifiers, write, total; hook "
                               "discovery, readiness, library and each library step, total."),
    "readiness_wait_seconds": ("histogram", "The hook's wait for GPUs to answer NVML, by outcome."),
    "readiness_polls": ("histogram", "NVML polls per readiness wait, by outcome."),
    "readiness_device_waits_total": ("counter", "Readiness waits per device that was not ready "
                                     "at the first poll (timeout: still not ready at the end)."),
    "retries_total": ("counter", "Retries of libnvidia-container calls by stage and error "
                      "class (the matched entry of the classification table)."),
    "retried_starts_total": ("counter", "Hook runs that retried, by the last retried error class "
                             "and outcome (recovered, failed, unknown: no end line)."),
    "config_errors_total": ("counter", "Starts failed by a configuration error, by component."),
    "log_lines_total": ("counter", "Lines of the shim's log read by the collector."),
    "log_rotations_total": ("counter", "Log rotations the collector followed, by whether the "
                            "rest of the rotated file was read (followed) or not (lost)."),
    "mig_instances": ("gauge", "MIG instances by profile: total (discovery), leased and stale "
                      "(the lease store)."),
    "config_valid": ("gauge", "1 when the shim's configuration loads, else 0."),
    "discovery_up": ("gauge", "1 when the collector's GPU discovery succeeded, else 0."),
    "collector_last_run_timestamp_seconds": ("gauge", "When gpu-ctk metrics last ran."),
}


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def series(name: str, pairs: Labels, value: float) -> str:
    inner = ",".join(f'{key}="{escape(text)}"' for key, text in pairs)
    return f"{name}{{{inner}}} {number(value)}" if inner else f"{name} {number(value)}"


def histogram_lines(name: str, pairs: Labels, hist: Histogram) -> Iterable[str]:
    running = 0
    for bound, count in zip((*hist.bounds, math.inf), hist.counts):
        running += count
        yield series(name + "_bucket", (*pairs, ("le", number(bound))), running)
    yield series(name + "_sum", pairs, hist.total)
    yield series(name + "_count", pairs, running)


def render(totals: Totals, gauges: Mapping[Key, float]) -> str:
    """The whole file; ``gauges`` are (name, labels) -> value read at collection time."""
    lines: list[str] = []
    for short, (kind, text) in HELP.items():
        name = P + short
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        if kind == "histogram":
            for (metric, pairs), hist in sorted(totals.histograms.items()):
                if metric == name:
                    lines += histogram_lines(name, pairs, hist)
            continue
        source = totals.counters if kind == "counter" else gauges
        lines += [series(name, pairs, value)
                  for (metric, pairs), value in sorted(source.items()) if metric == name]
    return "\n".join(lines) + "\n"
