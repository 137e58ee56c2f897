"""Folding log lines into counters and histograms; bounded labels; the state round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ctk.log_parse import parse_line
from ctk.metrics_model import P, Totals, error_class, labels


def t(second: int) -> str:
    return f"2026-12-01T10:{second // 60:02d}:{second % 60:02d}.000000Z"


def fold(*lines: str) -> Totals:
    totals = Totals()
    for line in lines:
        totals.add_line(parse_line(line))
    return totals


def counter(totals: Totals, name: str, **pairs: str) -> float:
    return totals.counters.get((P + name, labels(**pairs)), 0.0)


RETRY = ('time={} cmd=hook id={} event=retry msg="initialization: attempt 1/5 failed: '
         'nvc_init: cuda error: unknown error; retrying in 0.10s"')


def test_hook_done_and_error_count_starts_by_outcome_and_stage() -> None:
    totals = fold(f"time={t(1)} cmd=hook id=a event=done elapsed_ms=10",
                  f"time={t(2)} cmd=hook id=b event=error error_stage=mount msg=x",
                  f"time={t(3)} cmd=hook id=c event=done elapsed_ms=20")
    assert counter(totals, "gpu_starts_total", component="hook", outcome="ok",
                   stage="none") == 2
    assert counter(totals, "gpu_starts_total", component="hook", outcome="error",
                   stage="mount") == 1


def test_shim_failure_of_a_gpu_start_counts_as_a_failed_start() -> None:
    """gpu=yes or unknown: a failed GPU start; gpu=no: only a failed create."""
    totals = fold(f"time={t(1)} cmd=create id=a gpu=unknown error_stage=request msg=m",
                  f"time={t(2)} cmd=run id=b gpu=no error_stage=config.json msg=m")
    assert counter(totals, "gpu_starts_total", component="shim", outcome="error",
                   stage="request") == 1
    assert counter(totals, "creates_total", gpu="no", path="python", outcome="error",
                   stage="config.json") == 1
    assert sum(v for (n, _), v in totals.counters.items() if n == P + "gpu_starts_total") == 1


def test_config_errors_are_counted_per_component() -> None:
    totals = fold(f"time={t(1)} cmd=hook id=a event=error error_stage=config msg=m",
                  f"time={t(2)} cmd=create id=b gpu=yes error_stage=config msg=m")
    assert counter(totals, "config_errors_total", component="hook") == 1
    assert counter(totals, "config_errors_total", component="shim") == 1


def test_fast_path_creates_are_counted_apart() -> None:
    totals = fold(f"time={t(1)} level=info cmd=run id=a bundle=/b gpu=no written=no "
                  "changes=none path=fast")
    assert counter(totals, "creates_total", gpu="no", path="fast", outcome="ok",
                   stage="none") == 1
    assert totals.histograms == {}


def test_phase_timings_fill_histogram_buckets() -> None:
    totals = fold(f"time={t(1)} cmd=create id=a gpu=yes load_ms=3 duration_ms=30",
                  f"time={t(2)} cmd=create id=b gpu=yes load_ms=70 duration_ms=700")
    load = totals.histograms[(P + "phase_duration_seconds",
                              labels(component="shim", phase="load"))]
    assert sum(load.counts) == 2 and load.total == pytest.approx(0.073)
    assert load.counts[load.bounds.index(0.005)] == 1 and load.counts[load.bounds.index(0.1)] == 1


def test_readiness_waits_polls_and_devices() -> None:
    totals = fold(
        f'time={t(1)} cmd=hook id=a event=readiness outcome=ready polls=4 waited_ms=300 '
        f'waited_for="GPU 1 (GPU-x),GPU 3 (GPU-y)"',
        f'time={t(2)} cmd=hook id=b event=readiness level=error outcome=timeout polls=50 '
        f'waited_ms=5000 pending="GPU 3 (GPU-y)"',
        f"time={t(3)} cmd=hook id=c event=readiness outcome=ready polls=1 waited_ms=1 "
        "waited_for=-")
    polls = totals.histograms[(P + "readiness_polls", labels(outcome="ready"))]
    assert sum(polls.counts) == 2 and polls.total == 5
    assert counter(totals, "readiness_device_waits_total", device="GPU 3", outcome="ready") == 1
    assert counter(totals, "readiness_device_waits_total", device="GPU 3",
                   outcome="timeout") == 1
    wait = totals.histograms[(P + "readiness_wait_seconds", labels(outcome="timeout"))]
    assert wait.total == 5.0


def test_retries_by_class_and_the_start_outcome_they_led_to() -> None:
    """Two retries then done: recovered; one retry then error: failed."""
    totals = fold(RETRY.format(t(1), "a"), RETRY.format(t(2), "a"),
                  f"time={t(3)} cmd=hook id=a event=done elapsed_ms=1",
                  RETRY.format(t(4), "b"),
                  f"time={t(5)} cmd=hook id=b event=error error_stage=initialization msg=m")
    cls = "cuda error: unknown error"
    assert counter(totals, "retries_total", stage="initialization", error_class=cls) == 3
    assert counter(totals, "retried_starts_total", error_class=cls, outcome="recovered") == 1
    assert counter(totals, "retried_starts_total", error_class=cls, outcome="failed") == 1
    assert totals.pending == {}


def test_a_retrying_run_that_never_ends_counts_as_unknown_later() -> None:
    """No end line 15 minutes after its retry (the runtime killed the hook): outcome unknown."""
    totals = fold(RETRY.format(t(0), "a"))
    assert "a" in totals.pending
    totals.add_line(parse_line(RETRY.format("2026-12-01T10:20:00.000000Z", "b")))
    assert "a" not in totals.pending and "b" in totals.pending
    assert counter(totals, "retried_starts_total", error_class="cuda error: unknown error",
                   outcome="unknown") == 1


def test_error_class_is_a_table_entry_or_unclassified() -> None:
    assert error_class("nvc_init: Driver RPC error: timed out") == "driver rpc error: timed out"
    assert error_class("the moon is in the wrong phase") == "unclassified"


def test_label_values_stay_bounded() -> None:
    """A stage no code writes (spaces, capitals, a container id's length) becomes ``other``."""
    totals = fold(f'time={t(1)} cmd=hook id=a event=error error_stage="Weird Stage" msg=m',
                  f"time={t(2)} cmd=hook id=b event=error error_stage={'x' * 80} msg=m")
    assert counter(totals, "gpu_starts_total", component="hook", outcome="error",
                   stage="other") == 2
    assert not any(("id", v) in pairs for (_, pairs) in totals.counters for v in "ab")


def test_totals_survive_the_json_round_trip() -> None:
    totals = fold(RETRY.format(t(1), "a"),
                  f"time={t(2)} cmd=create id=z gpu=yes load_ms=3 duration_ms=30")
    again = Totals.from_json(json.loads(json.dumps(totals.to_json())))
    assert again == totals


@pytest.mark.parametrize("document, what", [
    ([], "not an object"),
    ({"counters": [["other_metric", [], 1]]}, "not ours"),
    ({"counters": [[P + "x", [], -1]]}, "non-negative"),
    ({"counters": [[P + "x", [["a"]], 1]]}, "pairs"),
    ({"histograms": [[P + "readiness_polls", [], [1, 2], 0]]}, "wrong buckets"),
    ({"pending": {"a": "b"}}, "pending"),
    ({"latest": 5}, "latest"),
])
def test_bad_totals_are_refused_naming_the_problem(document: Any, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        Totals.from_json(document)
