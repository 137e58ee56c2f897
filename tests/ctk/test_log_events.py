"""Which log lines are start events, and the phases, retries and devices they report."""

from __future__ import annotations

from typing import Optional

from ctk import log_events
from ctk.log_events import Event
from ctk.log_parse import parse_line

T = "time=2026-12-01T10:00:00.000000Z"


def ev(line: str) -> Optional[Event]:
    return log_events.event(parse_line(line))


def must(line: str) -> Event:
    found = ev(line)
    assert found is not None
    return found


def test_shim_create_line_is_a_create_with_its_phases() -> None:
    item = must(f"{T} level=info cmd=create id=c1 gpu=yes load_ms=1.5 request_ms=2 "
                "modifiers_ms=3 write_ms=4 discovery_ms=10 duration_ms=20.5")
    assert (item.kind, item.cid, item.failed) == ("create", "c1", False)
    assert log_events.phases(item) == {"shim/load": 0.0015, "shim/request": 0.002,
                                       "shim/modifiers": 0.003, "shim/write": 0.004,
                                       "shim/discovery": 0.01, "shim/total": 0.0205}


def test_fast_path_line_is_a_create_without_phases() -> None:
    """The launcher's line has no timings: counted, never observed."""
    item = must(f"{T} level=info cmd=run id=c2 bundle=/b gpu=no written=no changes=none "
                "path=fast")
    assert item.kind == "create" and log_events.phases(item) == {}


def test_shim_error_line_is_a_failed_create() -> None:
    item = must(f'{T} level=error cmd=create id=c3 gpu=unknown error_stage=request '
                f'msg="gpu-container-runtime: request: unknown device 9" duration_ms=3')
    assert item.failed and log_events.phases(item) == {}
    assert log_events.failure(item) == ("shim", "request",
                                        "gpu-container-runtime: request: unknown device 9")


def test_other_commands_and_events_are_not_start_events() -> None:
    """A delete, a hook ``environment`` note, a stranger's line: None."""
    assert ev(f"{T} level=info cmd=delete id=c1 duration_ms=1") is None
    assert ev(f"{T} level=warning cmd=hook id=c1 event=environment dropped=LD_PRELOAD") is None
    assert ev("kernel: something else entirely") is None


def test_hook_readiness_reports_discovery_and_wait() -> None:
    item = must(f'{T} cmd=hook stage=prestart id=c1 event=readiness outcome=ready devices=2 '
                f'polls=3 waited_ms=40 waited_for="GPU 0 (GPU-a),MIG 1:2 (MIG-b)" '
                f'discovery_ms=5 elapsed_ms=60')
    assert log_events.phases(item) == {"hook/discovery": 0.005, "hook/readiness": 0.04}
    assert log_events.waited_devices(item) == ("GPU 0", "MIG 1:2")
    assert item.number("polls") == 3


def test_readiness_timeout_names_the_devices_still_pending() -> None:
    item = must(f'{T} cmd=hook id=c1 event=readiness level=error outcome=timeout polls=9 '
                f'waited_ms=500 pending="GPU 2 (GPU-x)" last="GPU 2 (GPU-x): Not Found"')
    assert log_events.waited_devices(item) == ("GPU 2",)


def test_device_labels_that_are_not_ours_are_dropped() -> None:
    item = must(f'{T} cmd=hook id=c1 event=readiness outcome=ready polls=2 '
                f'waited_for="GPU 0 (GPU-a),toaster 7,GPU 99999 (x)"')
    assert log_events.waited_devices(item) == ("GPU 0",)


def test_mounted_reports_each_library_step() -> None:
    item = must(f"{T} cmd=hook id=c1 event=mounted initialization_ms=1 container_ms=2 "
                "detection_ms=3 mount_ms=4 ldcache_ms=5 library_ms=16 elapsed_ms=99")
    assert log_events.phases(item) == {
        "hook/initialization": 0.001, "hook/container": 0.002, "hook/detection": 0.003,
        "hook/mount": 0.004, "hook/ldcache": 0.005, "hook/library": 0.016}


def test_done_reports_the_hook_total() -> None:
    assert log_events.phases(must(f"{T} cmd=hook id=c1 event=done elapsed_ms=250")) == {
        "hook/total": 0.25}


def test_retry_message_gives_stage_and_cause() -> None:
    item = must(f'{T} cmd=hook id=c1 event=retry msg="initialization: attempt 1/5 failed: '
                f'nvc_init: driver rpc error: timed out; retrying in 0.12s"')
    assert log_events.retry(item) == ("initialization", "nvc_init: driver rpc error: timed out")
    assert log_events.retry(must(f'{T} cmd=hook id=c1 event=retry msg="garbled"')) is None


def test_bad_numbers_are_absent_not_errors() -> None:
    """Negative, non-numeric, NaN or huge timings are ignored."""
    item = must(f"{T} cmd=create id=c1 load_ms=-1 request_ms=abc write_ms=nan "
                "modifiers_ms=1e20 duration_ms=inf")
    assert log_events.phases(item) == {}


def test_a_spec_mode_create_line_has_its_readiness_phase() -> None:
    item = must(f"{T} level=info cmd=create id=c1 gpu=yes load_ms=1 request_ms=1 "
                "modifiers_ms=1 readiness_ms=7 write_ms=1 discovery_ms=2 duration_ms=13")
    assert log_events.phases(item)["shim/readiness"] == 0.007
