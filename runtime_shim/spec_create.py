"""What the shim's create does in spec mode besides the modifiers (README §Spec mode): no hook
waits for the GPUs or retries NVML later, so the create does, before config.json is written.

- One NVML session for the whole create: a reference is taken by the first discovery attempt
  that initialises NVML and kept through the readiness wait, so the driver state is set up once
  (NVML counts inits: discovery's and the probe's own init/shutdown pairs only move the count).
- Discovery under bounded retry (``gpu_core.retry``): NVML failures classified as the hook's are
  (``gpu_core.nvml_query.TRANSIENT_CODES``), within ``retry.deadline``; a permanent failure at
  the first attempt is reported as it is.
- The readiness wait (``gpu_core.readiness``) over the selected GPUs and MIG devices, within
  ``readiness.timeout``; its error names each device and NVML's last answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Optional

from gpu_core.errors import ShimError

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.inventory import Inventory
    from gpu_core.nvml_lib import Nvml
    from runtime_shim.context import Context


class Session:
    """One NVML reference held from the first successful init to ``close``."""

    def __init__(self, library: str) -> None:
        self.library = library
        self._nvml: Optional[Nvml] = None

    def hold(self) -> None:
        """Initialise NVML unless this session already holds it (an NvmlFailure otherwise)."""
        if self._nvml is not None:
            return
        from gpu_core.nvml_lib import open_nvml
        from gpu_core.nvml_query import reported

        nvml = open_nvml(self.library)
        with reported():
            nvml.init()
        self._nvml = nvml

    def close(self) -> None:
        if self._nvml is not None:
            from gpu_core.nvml_lib import NvmlError

            nvml, self._nvml = self._nvml, None
            with contextlib.suppress(NvmlError):  # the create's result is what matters
                nvml.shutdown()


def is_transient(error: BaseException) -> bool:
    from gpu_core.nvml_query import NvmlFailure

    return isinstance(error, NvmlFailure) and error.transient


def retried(config: Config, discover: Callable[[], Inventory], session: Session,
            log: Callable[[str], None], *, sleep: Callable[[float], None] = time.sleep
            ) -> Callable[[], Inventory]:
    """``discover`` with NVML held by ``session`` and transient NVML failures retried."""
    from gpu_core.retry import RetryError, RetryPolicy, run_with_retry

    policy = RetryPolicy.from_config(config.retry, config.retry.deadline, margin=0.0)

    def attempt() -> Inventory:
        session.hold()
        return discover()

    def run() -> Inventory:
        try:
            return run_with_retry(attempt, policy, is_transient, log, stage="discovery",
                                  sleep=sleep)
        except RetryError as error:
            last = error.last
            if error.attempts == 1 or not isinstance(last, ShimError):
                raise last from None  # nothing was retried, or no NVML failure: as it is
            raise ShimError("discovery", f"{error.attempts} attempts over {error.elapsed:.1f}s "
                                         f"({error.reason}): {last.cause}") from None
    return run


def wait_ready(config: Config, ctx: Context,
               sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait until the request's devices answer NVML (``readiness``); returns a note for the log
    ('' when nothing was waited for)."""
    from gpu_core.readiness import NvmlProbe, device_labels
    from gpu_core.readiness import wait_ready as wait

    if ctx.request is None:
        return ""
    labels = device_labels(ctx.selection(ctx.request))
    if not labels:
        return ""
    readiness = config.readiness
    with NvmlProbe(config.nvml.library) as probe:
        outcome = wait(labels, probe, readiness.timeout, readiness.interval, sleep=sleep)
    waited = ",".join(outcome.waited_for) or "-"
    return f"readiness: {outcome.devices} ready after {outcome.polls} polls " \
           f"({outcome.elapsed * 1000:.0f} ms; waited for {waited})"


@contextlib.contextmanager
def held(config: Config) -> Iterator[Session]:
    session = Session(config.nvml.library)
    try:
        yield session
    finally:
        session.close()
