"""Starts rebuilt from the log, their percentiles, and the 80-column report."""

from __future__ import annotations

from ctk import log_events, start_stats
from ctk.log_parse import parse_line
from ctk.start_stats import Start


def events(*lines: str) -> list[log_events.Event]:
    return start_stats.pick(log_events.event(parse_line(line)) for line in lines)


def t(n: int) -> str:
    return f"time=2026-12-01T10:00:{n:02d}.000000Z"


def gpu_start(n: int, cid: str, shim_ms: float, hook_ms: float, polls: int = 1) -> list[str]:
    waited = 'waited_for="GPU 1 (GPU-x)"' if polls > 1 else "waited_for=-"
    return [f"{t(n)} cmd=create id={cid} gpu=yes load_ms=1 duration_ms={shim_ms}",
            f"{t(n)} cmd=hook id={cid} event=readiness outcome=ready polls={polls} "
            f"waited_ms={polls * 10} {waited}",
            f"{t(n)} cmd=hook id={cid} event=done elapsed_ms={hook_ms}"]


def test_shim_and_hook_lines_of_one_id_make_one_start() -> None:
    found, others = start_stats.starts(events(
        *gpu_start(1, "a", 100, 300), f"{t(2)} cmd=run id=n gpu=no duration_ms=5",
        *gpu_start(3, "b", 50, 100)))
    assert [(s.cid, s.outcome, round(s.total(), 3)) for s in found] == [
        ("a", "ok", 0.4), ("b", "ok", 0.15)]
    assert others == 1


def test_a_hook_without_the_shim_starts_its_own_record() -> None:
    found, _ = start_stats.starts(events(f"{t(1)} cmd=hook id=h event=done elapsed_ms=7"))
    assert [(s.cid, s.outcome, s.phases) for s in found] == [("h", "ok", {"hook/total": 0.007})]


def test_failures_retries_and_unfinished_starts() -> None:
    found, _ = start_stats.starts(events(
        f'{t(1)} cmd=create id=x gpu=unknown error_stage=request msg="bad request"',
        f"{t(2)} cmd=create id=y gpu=yes duration_ms=5",
        f'{t(2)} cmd=hook id=y event=retry msg="mount: attempt 1/5 failed: busy; retrying in '
        f'0.1s"',
        f"{t(3)} cmd=create id=z gpu=yes duration_ms=5"))
    assert [(s.cid, s.outcome, s.failure, s.retries) for s in found] == [
        ("x", "failed", "shim request: bad request", []),
        ("y", "running", "", ["mount: busy"]), ("z", "running", "", [])]


def test_the_same_id_started_again_is_a_new_start() -> None:
    found, _ = start_stats.starts(events(*gpu_start(1, "a", 10, 10), *gpu_start(2, "a", 20, 20)))
    assert len(found) == 2


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert start_stats.percentile(values, 0.5) == 50.0
    assert start_stats.percentile(values, 0.95) == 95.0
    assert start_stats.percentile([7.0], 0.95) == 7.0


def test_summary_covers_only_the_last_n_starts() -> None:
    lines = [line for n in range(10) for line in gpu_start(n, f"c{n}", 10 * (n + 1), 100)]
    found, others = start_stats.starts(events(*lines))
    report = start_stats.summary(found, others, 3)
    assert report["starts"] == 3 and [r["id"] for r in report["recent"]] == ["c7", "c8", "c9"]
    assert report["phases"]["shim/total"] == {"count": 3, "p50_ms": 90.0, "p95_ms": 100.0,
                                              "max_ms": 100.0}
    assert report["slowest"][0]["id"] == "c9"


def test_readiness_waits_name_the_devices() -> None:
    found, others = start_stats.starts(events(*gpu_start(1, "a", 1, 1, polls=5),
                                              *gpu_start(2, "b", 1, 1)))
    waits = start_stats.summary(found, others, 10)["readiness_waits"]
    assert waits == {"starts": 1, "max_polls": 5, "devices": {"GPU 1": 1}}


def test_table_fits_80_columns_with_long_ids_and_causes() -> None:
    long_id = "k8s_" + "x" * 100
    found, others = start_stats.starts(events(
        *gpu_start(1, long_id, 123456.7, 99999.9),
        f'{t(2)} cmd=hook id=q event=retry msg="initialization: attempt 1/5 failed: '
        f'{"very long cause " * 20}; retrying in 0.1s"',
        f'{t(3)} cmd=hook id=q event=error error_stage=initialization msg="{"e" * 200}"'))
    text = start_stats.table(start_stats.summary(found, others, 50), "/var/log/" + "l" * 90)
    assert max(len(row) for row in text.splitlines()) <= 80
    assert "k8s_xxxxxxxxxxxxxxxxxxxx…" in text and "failures: 1" in text
    assert text.splitlines()[1].endswith("l" * 60)


def test_table_of_no_starts_says_so() -> None:
    text = start_stats.table(start_stats.summary([], 0, 50), "/log")
    assert text.splitlines()[:2] == ["gpu-ctk stats: last 0 GPU starts", "  log: /log"]


def test_start_json_rounds_milliseconds() -> None:
    start = Start("a", "t", phases={"hook/total": 0.12345})
    assert start.to_json()["phases_ms"] == {"hook/total": 123.5}
