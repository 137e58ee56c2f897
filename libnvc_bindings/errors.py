"""The exceptions the bindings raise; each message starts with a lowercase stage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libnvc_bindings import classification


class NvcError(Exception):
    """A libnvidia-container call failed: ``stage`` names the C function, ``message`` is what
    ``nvc_error(ctx)`` said, and the retry policy asks ``transient`` whether to try again."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message

    @property
    def kind(self) -> str:
        """``transient``, ``permanent`` or ``unclassified`` (see ``classification``)."""
        return classification.classify(self.message)

    @property
    def transient(self) -> bool:
        """Whether trying the same call again may succeed."""
        return classification.is_transient(self.message)


class UnsupportedVersionError(ValueError):
    """The library's release belongs to no declared ABI generation, so no struct layout we
    hold can be trusted against it."""

    def __init__(self, version: tuple[int, int, int], supported: str) -> None:
        text = ".".join(str(part) for part in version)
        super().__init__(f"version: libnvidia-container {text} is not supported ({supported})")
        self.version = version


@dataclass(frozen=True)
class LoadAttempt:
    """One candidate library the loader tried, and why it was not used."""

    candidate: str
    reason: str


class NvcLoadError(Exception):
    """No candidate library was usable; the message lists every attempt with its reason."""

    def __init__(self, attempts: Sequence[LoadAttempt]) -> None:
        tried = "; ".join(f"{a.candidate}: {a.reason}" for a in attempts) or "no candidates"
        super().__init__(f"load: no usable libnvidia-container (tried {tried})")
        self.attempts = tuple(attempts)
