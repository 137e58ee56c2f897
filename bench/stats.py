"""Paired measurements and their summary: pure functions, no I/O."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Paired:
    """Per-round times of A and B (seconds), measured alternately in the same rounds."""

    a: Sequence[float]
    b: Sequence[float]

    @property
    def ratios(self) -> list[float]:
        return [x / y for x, y in zip(self.a, self.b) if y > 0]


@dataclass(frozen=True)
class Summary:
    """What one table row shows: medians of A and B, and the median and range of A/B."""

    rounds: int
    a_median: float
    b_median: float
    ratio_median: float
    ratio_min: float
    ratio_max: float


def summarise(paired: Paired) -> Summary:
    ratios = paired.ratios
    if not ratios:
        raise ValueError("no completed rounds")
    return Summary(rounds=len(ratios), a_median=statistics.median(paired.a),
                   b_median=statistics.median(paired.b), ratio_median=statistics.median(ratios),
                   ratio_min=min(ratios), ratio_max=max(ratios))


def ms(seconds: float) -> str:
    """Milliseconds with precision that suits the size."""
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
