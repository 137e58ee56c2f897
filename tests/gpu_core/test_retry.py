"""Bounded retry: policy from config, full-jitter backoff, caps, logging, final error text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Callable

import pytest

from gpu_core.config import defaults
from gpu_core.errors import ShimError
from gpu_core.retry import RetryError, RetryPolicy, run_with_retry

POLICY = RetryPolicy(attempts=5, deadline=20.0, initial_backoff=0.2, max_backoff=4.0)


class Flaky(Exception):
    """A failure the tests declare transient."""


class Broken(Exception):
    """A failure the tests declare permanent."""


def transient(error: BaseException) -> bool:
    return isinstance(error, Flaky)


class World:
    """A fake clock, sleep and call: time moves only when the test says so."""

    def __init__(self, call_seconds: float = 0.0) -> None:
        self.now = 100.0
        self.call_seconds = call_seconds
        self.sleeps: list[float] = []
        self.logs: list[str] = []
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def call(self, outcomes: Iterator[object]) -> Callable[[], object]:
        def fn() -> object:
            self.calls += 1
            self.now += self.call_seconds
            outcome = next(outcomes)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return fn

    def run(self, outcomes: Sequence[object], policy: RetryPolicy = POLICY,
            rng: Callable[[], float] = lambda: 1.0) -> object:
        return run_with_retry(self.call(iter(outcomes)), policy, transient, self.logs.append,
                              stage="nvc_init", clock=self.clock, sleep=self.sleep, rng=rng)


class TestPolicy:
    def test_from_config_defaults(self) -> None:
        """The shipped defaults fit a 30 s hook timeout unchanged."""
        policy = RetryPolicy.from_config(defaults().retry, budget=30.0)
        assert policy == RetryPolicy(attempts=5, deadline=20.0, initial_backoff=0.2,
                                     max_backoff=4.0)

    def test_deadline_is_cut_to_the_budget_minus_the_margin(self) -> None:
        """A deadline longer than the hook's remaining time is cut, leaving the margin."""
        policy = RetryPolicy.from_config(defaults().retry, budget=10.0, margin=2.0)
        assert policy.deadline == 8.0

    def test_deadline_never_goes_negative(self) -> None:
        """A budget smaller than the margin leaves a zero deadline (one attempt, no retry)."""
        assert POLICY.within(1.0, margin=2.0).deadline == 0.0

    @pytest.mark.parametrize(("retry", "bound"), [(1, 0.2), (2, 0.4), (3, 0.8), (5, 3.2),
                                                  (6, 4.0), (200, 4.0)])
    def test_backoff_doubles_up_to_the_cap(self, retry: int, bound: float) -> None:
        """The delay bound doubles per retry and stops at max_backoff."""
        assert POLICY.backoff(retry) == pytest.approx(bound)


class TestRun:
    def test_success_first_time_returns_at_once(self) -> None:
        """A call that succeeds is made once, with no sleep and no log."""
        world = World()
        assert world.run(["ok"]) == "ok"
        assert (world.calls, world.sleeps, world.logs) == (1, [], [])

    def test_transient_then_success(self) -> None:
        """Transient failures are retried until the call succeeds."""
        world = World()
        assert world.run([Flaky("a"), Flaky("b"), "ok"]) == "ok"
        assert world.calls == 3
        assert world.sleeps == pytest.approx([0.2, 0.4])

    def test_permanent_error_stops_at_once(self) -> None:
        """A permanent error is not retried and says so."""
        world = World()
        with pytest.raises(RetryError, match=r"^nvc_init: 1 attempt over 0\.0s "
                                             r"\(permanent error\): bad option$"):
            world.run([Broken("bad option"), "ok"])
        assert (world.calls, world.sleeps) == (1, [])

    def test_permanent_after_transient_stops(self) -> None:
        """A permanent error ends the run even after transient ones."""
        world = World()
        with pytest.raises(RetryError, match=r"2 attempts .*\(permanent error\): nope"):
            world.run([Flaky("x"), Broken("nope")])

    def test_attempt_cap(self) -> None:
        """No more than ``attempts`` calls are made; the error counts them and the time."""
        world = World(call_seconds=0.5)
        policy = RetryPolicy(attempts=3, deadline=60.0, initial_backoff=1.0, max_backoff=1.0)
        with pytest.raises(RetryError, match=r"^nvc_init: 3 attempts over 3\.5s "
                                             r"\(attempt cap\): still busy$") as caught:
            world.run([Flaky("still busy")] * 10, policy)
        assert world.calls == 3
        assert caught.value.attempts == 3
        assert caught.value.elapsed == pytest.approx(3.5)

    def test_deadline_cap(self) -> None:
        """No retry is started that would end past the deadline."""
        world = World(call_seconds=1.0)
        policy = RetryPolicy(attempts=100, deadline=5.0, initial_backoff=1.0, max_backoff=1.0)
        with pytest.raises(RetryError, match=r"\(deadline\)") as caught:
            world.run([Flaky("slow")] * 100, policy)
        assert world.now - 100.0 <= 5.0
        assert caught.value.attempts == world.calls == 3

    def test_run_stays_inside_the_budget_with_slow_attempts(self) -> None:
        """With attempts as long as the longest seen, the run ends within the deadline."""
        world = World(call_seconds=4.0)
        policy = RetryPolicy.from_config(defaults().retry, budget=12.0)
        with pytest.raises(RetryError):
            world.run([Flaky("rpc timed out")] * 10, policy)
        assert world.now - 100.0 <= policy.deadline

    def test_zero_deadline_makes_one_attempt(self) -> None:
        """A zero deadline allows the first attempt only."""
        world = World()
        with pytest.raises(RetryError, match=r"1 attempt over 0\.0s \(deadline\)"):
            world.run([Flaky("x"), "ok"], POLICY.within(0.0, margin=0.0))

    @pytest.mark.parametrize("draw", [0.0, 0.3, 0.999])
    def test_full_jitter_scales_the_bound(self, draw: float) -> None:
        """Each delay is the random draw times the backoff bound (full jitter)."""
        world = World()
        world.run([Flaky("x"), Flaky("y"), "ok"], rng=lambda: draw)
        assert world.sleeps == pytest.approx([draw * 0.2, draw * 0.4])

    def test_jitter_stays_within_bounds(self) -> None:
        """Across many draws no delay is negative or above max_backoff."""
        import random

        world = World()
        policy = RetryPolicy(attempts=60, deadline=3600.0, initial_backoff=0.2, max_backoff=4.0)
        world.run([Flaky("x")] * 59 + ["ok"], policy, rng=random.Random(7).random)
        assert all(0.0 <= delay <= 4.0 for delay in world.sleeps)
        assert len(world.sleeps) == 59

    def test_each_retry_is_logged_once_with_its_error_and_delay(self) -> None:
        """One line per retry: attempt number, the error and the chosen delay."""
        world = World()
        world.run([Flaky("cuda error: unknown error"), Flaky("driver rpc error:\ntimed out"),
                   "ok"], rng=lambda: 0.5)
        assert world.logs == [
            "nvc_init: attempt 1/5 failed: cuda error: unknown error; retrying in 0.10s",
            "nvc_init: attempt 2/5 failed: driver rpc error: timed out; retrying in 0.20s",
        ]

    def test_final_error_is_a_shim_error_chained_to_the_last(self) -> None:
        """The final error is a ShimError whose cause chain holds the last failure."""
        world = World()
        last = Flaky("last one")
        with pytest.raises(ShimError) as caught:
            world.run([Flaky("first")] * 4 + [last])
        assert caught.value.__cause__ is last
        assert isinstance(caught.value, RetryError) and caught.value.last is last

    def test_base_exceptions_are_not_caught(self) -> None:
        """KeyboardInterrupt and friends pass straight through."""
        world = World()
        with pytest.raises(KeyboardInterrupt):
            world.run([KeyboardInterrupt()])
        assert world.calls == 1
