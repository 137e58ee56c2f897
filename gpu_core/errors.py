"""The one error type every layer above the bindings raises, and how a command prints it."""

from __future__ import annotations


class ShimError(Exception):
    """A failure with a lowercase stage; commands print it as one line and exit non-zero."""

    def __init__(self, stage: str, cause: str) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause


def one_line(text: str, limit: int = 2000) -> str:
    """Fold ``text`` onto one bounded line: errors are grepped and shown by engines one line at a
    time, and an untrusted value echoed in a message must not forge extra lines."""
    flat = " ".join(text.replace("\x00", "\\0").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
