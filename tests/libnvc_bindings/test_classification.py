"""Transient versus permanent libnvidia-container messages."""

from __future__ import annotations

import pytest

from libnvc_bindings import classification
from libnvc_bindings.errors import NvcError

CASES = [
    ("cuda error: unknown error", "transient"),
    ("initialization error: cuda error: unknown error", "transient"),
    ("driver rpc error: timed out", "transient"),
    ("nvml error: driver not loaded", "transient"),
    ("NVML error: Unknown Error", "transient"),
    ("cuda error: system not yet initialized", "transient"),
    ("mount error: /dev/nvidia0: device or resource busy", "transient"),
    ("nvml error: driver/library version mismatch", "permanent"),
    ("unknown device", "permanent"),
    ("device error: GPU-123: unknown device", "permanent"),
    ("invalid option: no-such-option", "permanent"),
    ("nvml error: gpu is lost", "permanent"),
    ("nvc_init: not provided by libnvidia-container 1.0.2", "permanent"),
    ("something nobody has seen before", "unclassified"),
    ("", "unclassified"),
]


@pytest.mark.parametrize(("message", "kind"), CASES)
def test_classify_table(message: str, kind: str) -> None:
    """Each message falls in its class, case-insensitively and anywhere in the text."""
    assert classification.classify(message) == kind


def test_permanent_wins_over_transient() -> None:
    """A message naming both a transient and a permanent cause is permanent."""
    assert classification.classify(
        "cuda error: unknown error; driver/library version mismatch") == "permanent"


@pytest.mark.parametrize("message", ["no idea what happened", "nvml error: gpu is lost"])
def test_unclassified_and_permanent_are_not_retried(message: str) -> None:
    """Only transient messages are retried; unknown ones are treated as permanent."""
    assert classification.is_transient(message) is False


def test_tables_do_not_overlap() -> None:
    """No pattern is listed as both transient and permanent."""
    assert not set(classification.TRANSIENT) & set(classification.PERMANENT)


def test_tables_are_lowercase() -> None:
    """Patterns are lowercase, since messages are lowered before matching."""
    patterns = classification.TRANSIENT + classification.PERMANENT
    assert all(pattern == pattern.lower() for pattern in patterns)


def test_nvc_error_reports_its_class() -> None:
    """NvcError exposes its message's class and whether it is transient."""
    error = NvcError("nvc_init", "driver rpc error: timed out")
    assert (error.kind, error.transient) == ("transient", True)
    assert str(error) == "nvc_init: driver rpc error: timed out"
