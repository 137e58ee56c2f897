"""The exposition text: HELP/TYPE for every metric, cumulative buckets, escaped labels."""

from __future__ import annotations

from ctk.log_parse import parse_line
from ctk.metrics_model import P, Totals, labels
from ctk.metrics_text import HELP, render


def test_every_metric_has_help_and_type_even_without_samples() -> None:
    text = render(Totals(), {})
    for short, (kind, _) in HELP.items():
        assert f"# TYPE {P}{short} {kind}\n" in text


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    totals = Totals()
    for polls in (1, 4, 4, 500):
        totals.add_line(parse_line(f"cmd=hook id=a event=readiness outcome=ready polls={polls}"))
    text = render(totals, {})
    name = P + "readiness_polls"
    assert f'{name}_bucket{{outcome="ready",le="1"}} 1\n' in text
    assert f'{name}_bucket{{outcome="ready",le="3"}} 1\n' in text
    assert f'{name}_bucket{{outcome="ready",le="5"}} 3\n' in text
    assert f'{name}_bucket{{outcome="ready",le="200"}} 3\n' in text
    assert f'{name}_bucket{{outcome="ready",le="+Inf"}} 4\n' in text
    assert f'{name}_sum{{outcome="ready"}} 509\n' in text
    assert f'{name}_count{{outcome="ready"}} 4\n' in text


def test_label_values_are_escaped() -> None:
    text = render(Totals(), {(P + "mig_instances", labels(profile='a"b\\c\nd', state="total")):
                             3.0})
    assert f'{P}mig_instances{{profile="a\\"b\\\\c\\nd",state="total"}} 3\n' in text


def test_gauges_without_labels_and_fractional_values() -> None:
    text = render(Totals(), {(P + "config_valid", ()): 1.0,
                             (P + "collector_last_run_timestamp_seconds", ()): 1.5})
    assert f"{P}config_valid 1\n" in text
    assert f"{P}collector_last_run_timestamp_seconds 1.5\n" in text
