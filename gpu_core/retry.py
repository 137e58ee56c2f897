"""Bounded retry of flaky calls (README §The prestart hook): full-jitter exponential backoff,
an attempt cap and a total deadline that always ends inside the hook's own timeout.

``RetryPolicy`` is pure data built from the configuration's ``retry`` settings;
``run_with_retry`` is the one runner, with clock, sleep and randomness injected so tests never
sleep.
"""

import time
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, TypeVar

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.settings import RetrySettings

T = TypeVar("T")

# Seconds of the hook's timeout the retry deadline never uses: the hook still has to report
# the failure (and the runtime to read it) before the runtime kills it.
DEFAULT_MARGIN = 2.0


class RetryPolicy(NamedTuple):
    """How often and how long to retry: ``attempts`` calls at most, no retry that would end
    past ``deadline`` seconds from the first call, delays growing from ``initial_backoff``
    and capped at ``max_backoff``."""

    attempts: int
    deadline: float
    initial_backoff: float
    max_backoff: float

    @classmethod
    def from_config(cls, settings: "RetrySettings", budget: float,
                    margin: float = DEFAULT_MARGIN) -> "RetryPolicy":
        """Build from config section ``retry``, fitted into ``budget`` seconds (what is left
        of the hook entry's own timeout)."""
        policy = cls(attempts=settings.attempts, deadline=settings.deadline,
                     initial_backoff=settings.initial_backoff, max_backoff=settings.max_backoff)
        return policy.within(budget, margin)

    def within(self, budget: float, margin: float = DEFAULT_MARGIN) -> "RetryPolicy":
        """The same policy with its deadline cut to leave ``margin`` of ``budget`` unused."""
        return self._replace(deadline=max(0.0, min(self.deadline, budget - margin)))

    def backoff(self, retry: int) -> float:
        """The upper bound of the delay before retry number ``retry`` (1 = the first retry)."""
        exponent = min(retry - 1, 64)  # 2**64 already exceeds any max_backoff
        return float(min(self.max_backoff, self.initial_backoff * 2.0 ** exponent))


class RetryError(ShimError):
    """Retrying ended without success; says how many attempts over how long and why it
    stopped, then the last error."""

    def __init__(self, stage: str, attempts: int, elapsed: float, reason: str,
                 last: BaseException) -> None:
        noun = "attempt" if attempts == 1 else "attempts"
        super().__init__(stage, f"{attempts} {noun} over {elapsed:.1f}s ({reason}): "
                                f"{one_line(str(last))}")
        self.attempts = attempts
        self.elapsed = elapsed
        self.reason = reason
        self.last = last


def run_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    log: Callable[[str], None],
    *,
    stage: str = "retry",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: Optional[Callable[[], float]] = None,
) -> T:
    """Call ``fn`` until it returns, retrying only errors ``is_transient`` accepts.

    A retry is made only if its delay plus the longest attempt so far still ends inside the
    deadline, so the whole run stays inside the budget the policy was fitted to. Each retry
    is logged as one line; the end raises ``RetryError`` (chained to the last error) whose
    reason is ``permanent error``, ``attempt cap`` or ``deadline``. ``rng`` defaults to
    ``random.random``, imported on the first retry: most starts never retry, and importing
    ``random`` is a measurable part of a start.
    """
    start = clock()
    longest = 0.0
    attempt = 0
    while True:
        attempt += 1
        began = clock()
        try:
            return fn()
        except Exception as error:
            now = clock()
            longest = max(longest, now - began)
            elapsed = now - start
            if not is_transient(error):
                raise RetryError(stage, attempt, elapsed, "permanent error", error) from error
            if attempt >= policy.attempts:
                raise RetryError(stage, attempt, elapsed, "attempt cap", error) from error
            if rng is None:
                import random

                rng = random.random
            delay = rng() * policy.backoff(attempt)
            if elapsed + delay + longest > policy.deadline:
                raise RetryError(stage, attempt, elapsed, "deadline", error) from error
            log(f"{stage}: attempt {attempt}/{policy.attempts} failed: {one_line(str(error))}; "
                f"retrying in {delay:.2f}s")
            sleep(delay)
