"""Wait until every requested device is visible and healthy through NVML (README
§The prestart hook).

A container started while the driver is still binding its devices sees ``no devices found``;
the hook therefore polls NVML until each requested GPU and MIG device answers: a handle by UUID,
readable memory info, and neither ``GPU_IS_LOST`` nor ``RESET_REQUIRED``. ``wait_ready`` is the
pure loop (probe, clock and sleep injected); ``NvmlProbe`` is the I/O edge.
"""

import contextlib
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.nvml_lib import Nvml, NvmlError
    from gpu_core.selection import Selection

STAGE = "readiness"

SHOWN = 8
"""How many not-ready devices an error names before it only counts the rest."""


class Answer(NamedTuple):
    """NVML's answer about one device in one poll: ready or not, and what it said."""

    ready: bool
    detail: str


READY = Answer(ready=True, detail="ready")


def device_labels(selection: "Selection") -> dict[str, str]:
    """UUID -> ``GPU 0 (GPU-…)`` / ``MIG 0:1 (MIG-…)`` for every device the wait covers (the
    hook's and, in spec mode, the shim's)."""
    labels = {gpu.uuid: f"GPU {gpu.index} ({gpu.uuid})" for gpu in selection.checked_gpus}
    for mig in selection.mig_devices:
        labels[mig.uuid] = f"MIG {mig.parent_index}:{mig.index} ({mig.uuid})"
    return labels

Probe = Callable[[Sequence[str]], Mapping[str, Answer]]
"""Asks NVML about the given UUIDs once; returns an answer for each (a missing one is not
ready). A probe never raises: every failure is an answer, so the loop can name it."""


class Outcome(NamedTuple):
    """How a successful wait went, for the log."""

    devices: int
    polls: int
    elapsed: float
    waited_for: tuple[str, ...]
    """Labels of the devices that were not ready at the first poll (empty: no wait)."""


class NotReadyError(ShimError):
    """The deadline passed with devices still not ready; ``last`` is NVML's last answer for
    each of them (label -> answer detail)."""

    def __init__(self, last: Mapping[str, str], polls: int, elapsed: float) -> None:
        named = "; ".join(f"{label}: {detail}" for label, detail in list(last.items())[:SHOWN])
        more = f"; and {len(last) - SHOWN} more" if len(last) > SHOWN else ""
        noun = "device" if len(last) == 1 else "devices"
        polled = "poll" if polls == 1 else "polls"
        super().__init__(STAGE, one_line(
            f"{len(last)} {noun} not ready after {elapsed:.1f}s ({polls} {polled}): "
            f"{named}{more}"))
        self.last = dict(last)
        self.polls = polls
        self.elapsed = elapsed


def fit_timeout(configured: float, remaining: float, margin: float, reserve: float) -> float:
    """The readiness wait's share of the ``remaining`` hook budget: what the configuration asks,
    cut so that the mounts after it still get ``reserve`` seconds (at most half of what is
    usable) and the failure report ``margin``."""
    usable = max(0.0, remaining - margin)
    return max(0.0, min(configured, usable - min(reserve, usable / 2)))


def wait_ready(
    devices: Mapping[str, str],
    probe: Probe,
    timeout: float,
    interval: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Poll ``probe`` until every device of ``devices`` (UUID -> label for messages) has been
    seen ready; a device once ready is not asked again. The last poll happens at the deadline,
    ``timeout`` seconds after the first; then ``NotReadyError`` names each device still
    pending with its last answer."""
    start = clock()
    pending = list(devices)
    last: dict[str, Answer] = {}
    waited_for: tuple[str, ...] = ()
    polls = 0
    while pending:
        polls += 1
        answers = probe(tuple(pending))
        for uuid in pending:
            last[uuid] = answers.get(uuid, Answer(False, "no answer from the probe"))
        pending = [uuid for uuid in pending if not last[uuid].ready]
        if polls == 1:
            waited_for = tuple(devices[uuid] for uuid in pending)
        if not pending:
            break
        left = timeout - (clock() - start)
        if left <= 0:
            raise NotReadyError({devices[uuid]: last[uuid].detail for uuid in pending}, polls,
                                clock() - start)
        sleep(min(interval, left))
    return Outcome(devices=len(devices), polls=polls, elapsed=clock() - start,
                   waited_for=waited_for)


class NvmlProbe:
    """Asks NVML; use as a context manager so NVML is initialised at most once per wait (an init
    can take seconds without persistence mode) and always shut down. An init that fails is
    tried again on the next poll: a driver still loading is one of the things waited for."""

    def __init__(self, library: str = "") -> None:
        self.library = library
        self._nvml: Optional[Nvml] = None
        self._initialized = False

    def __enter__(self) -> "NvmlProbe":
        from gpu_core.nvml_lib import open_nvml

        # The binding discovery uses (plain ctypes, no pynvml: README §Performance).
        self._nvml = open_nvml(self.library)
        return self

    def __exit__(self, kind: Optional[type[BaseException]], value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        if self._initialized and self._nvml is not None:
            self._initialized = False
            from gpu_core.nvml_lib import NvmlError

            # The wait's own result is what matters, not shutdown's.
            with contextlib.suppress(NvmlError):
                self._nvml.shutdown()

    def __call__(self, uuids: Sequence[str]) -> Mapping[str, Answer]:
        from gpu_core.nvml_lib import NvmlError

        nvml = self._nvml
        if nvml is None:
            raise RuntimeError("NvmlProbe used outside its with block")
        if not self._initialized:
            try:
                nvml.init()
            except NvmlError as exc:
                answer = Answer(False, _failed(exc))
                return {uuid: answer for uuid in uuids}
            self._initialized = True
        return {uuid: self._ask(nvml, uuid) for uuid in uuids}

    @staticmethod
    def _ask(nvml: "Nvml", uuid: str) -> Answer:
        from gpu_core.nvml_lib import NvmlError

        try:
            nvml.memory_info(nvml.handle_by_uuid(uuid))
        except NvmlError as exc:
            return Answer(False, _failed(exc))
        return READY


def _failed(exc: "NvmlError") -> str:
    """``<call>: <NVML's message> (NVML error <code>)``; the code tells GPU_IS_LOST (15) and
    RESET_REQUIRED (16) apart from a device that is merely not there yet."""
    return one_line(f"{exc.call}: {exc} (NVML error {exc.value})", 200)
