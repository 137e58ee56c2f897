"""hook.bounded_child: the work's result comes back; at the deadline the child and everything
below it, however detached, is killed and reaped, and the error names the step it was in."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Mapping

import pytest

from gpu_core.errors import ShimError
from hook.bounded_child import Channel, children_of, run_bounded, sweep


def running(marker: str) -> list[str]:
    """Processes whose command line carries ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as stream:
                    if marker.encode() in stream.read():
                        found.append(entry)
            except OSError:
                continue
    return found


def detached_sleepers(marker: str) -> None:
    """A grandchild in a session of its own and one in the child's group, both deaf to
    SIGTERM, carrying ``marker``."""
    loop = 'trap "" TERM HUP; while :; do sleep 1; done'
    subprocess.Popen(["setsid", "sh", "-c", loop, f"{marker}-setsid"])
    subprocess.Popen(["sh", "-c", f"({loop}) & {loop}", f"{marker}-group"])


def test_the_result_and_log_lines_come_back() -> None:
    logged: list[str] = []

    def work(channel: Channel) -> Mapping[str, str]:
        channel.step("mount")
        channel.log("retrying")
        return {"gpus": "GPU-1", "pid": str(os.getpid())}

    done, leftover = run_bounded(work, 30, log=logged.append, what="work")
    assert done["gpus"] == "GPU-1" and done["pid"] != str(os.getpid())
    assert (logged, leftover) == (["retrying"], 0)


def test_the_childs_error_is_raised_with_its_stage() -> None:
    def work(channel: Channel) -> Mapping[str, str]:
        raise ShimError("detection", "no such GPU")

    with pytest.raises(ShimError) as caught:
        run_bounded(work, 30, log=print, what="work")
    assert (caught.value.stage, caught.value.cause) == ("detection", "no such GPU")


def test_an_unexpected_exception_is_an_internal_error() -> None:
    def work(channel: Channel) -> Mapping[str, str]:
        raise KeyError("x")

    with pytest.raises(ShimError, match=r"^internal: KeyError: 'x'$"):
        run_bounded(work, 30, log=print, what="work")


def test_a_child_that_dies_without_a_result_is_named() -> None:
    def work(channel: Channel) -> Mapping[str, str]:
        channel.step("ldcache")
        os._exit(3)

    with pytest.raises(ShimError, match=r"^ldcache: work ended without a result$"):
        run_bounded(work, 30, log=print, what="work")


def test_a_hanging_child_and_its_detached_grandchildren_are_killed_at_the_deadline() -> None:
    marker = f"bounded-{uuid.uuid4().hex[:8]}"

    def work(channel: Channel) -> Mapping[str, str]:
        channel.step("ldcache")
        detached_sleepers(marker)
        time.sleep(600)
        return {}

    with pytest.raises(ShimError) as caught:
        run_bounded(work, 1.0, log=print, what="libnvidia-container")
    assert caught.value.stage == "ldcache"
    assert "libnvidia-container did not finish within 1.0s" in caught.value.cause
    assert running(marker) == [] and children_of(os.getpid()) == []


def test_processes_left_after_a_result_are_killed_and_counted() -> None:
    marker = f"bounded-{uuid.uuid4().hex[:8]}"

    def work(channel: Channel) -> Mapping[str, str]:
        detached_sleepers(marker)
        return {}

    done, leftover = run_bounded(work, 30, log=print, what="work")
    assert done == {} and leftover >= 2
    assert running(marker) == [] and children_of(os.getpid()) == []


def test_a_spent_budget_still_runs_nothing_past_it() -> None:
    def work(channel: Channel) -> Mapping[str, str]:
        time.sleep(600)
        return {}

    with pytest.raises(ShimError, match=r"did not finish within 0\.0s"):
        run_bounded(work, -5, log=print, what="work")
    assert children_of(os.getpid()) == []


def test_sweep_without_children_kills_nothing() -> None:
    assert sweep() == 0
