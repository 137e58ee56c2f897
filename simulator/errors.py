"""The simulator's own error type: the simulated host is a tool beside the product, so it does
not raise the product's ShimError; ``gpu-ctk simulate`` turns one into the other at its edge
(ctk/simulate.py, ctk/simulate_run.py)."""

from __future__ import annotations


class SimulatorError(Exception):
    """Building or entering a simulated host failed; ``stage`` is lowercase (``simulate``)."""

    def __init__(self, stage: str, cause: str) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause


def one_line(text: str, limit: int = 2000) -> str:
    """Fold ``text`` onto one bounded line (as gpu_core.errors.one_line): a value from a
    topology file or a compiler's output must not forge extra lines in a message."""
    flat = " ".join(text.replace("\x00", "\\0").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
