"""simulator.errors: the simulator's own error type."""

from __future__ import annotations

from gpu_core.errors import ShimError
from simulator.errors import SimulatorError, one_line


def test_the_error_reads_stage_then_cause() -> None:
    error = SimulatorError("simulate", "topology x: no such built-in topology")
    assert (str(error), error.stage, error.cause) == \
        ("simulate: topology x: no such built-in topology", "simulate",
         "topology x: no such built-in topology")


def test_the_error_is_not_the_products_error() -> None:
    assert not issubclass(SimulatorError, ShimError)


def test_one_line_folds_newlines_and_nul_so_no_line_is_forged() -> None:
    assert one_line("a\nb\x00c\r\n  d") == "a b\\0c d"


def test_one_line_bounds_the_length() -> None:
    assert one_line("x" * 50, 10) == "xxxxxxx..."
