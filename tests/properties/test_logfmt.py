"""Properties of our logfmt lines (gpu_core/logfile.py): whatever the values, each line is one line
of text without control characters, and parse_line gives the values back."""

from __future__ import annotations

import contextlib
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_core.logfile import logfmt, parse_line, quote, quoted
from runtime_shim.logs import runc_log_line

FAST = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEPARATORS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""Everything str.splitlines() or a terminal takes as the end of a line."""

values = st.text(alphabet=st.characters(codec=None), max_size=40) | st.text(
    alphabet=st.sampled_from(list(SEPARATORS + "\x00\x1b\x7f\x9b\u202e\ud800\"\\= a")),
    max_size=12)
"""Any string, lone surrogates included, and strings dense in separators and escapes."""

keys = st.sampled_from(["time", "level", "id", "msg", "changes", "note"])


def clean(line: str) -> bool:
    """One line, and nothing a terminal or a log viewer would act on."""
    return len(line.splitlines()) <= 1 and not any(
        c == "\x7f" or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in line)


@FAST
@given(st.lists(st.tuples(keys, values), max_size=6))
def test_a_line_is_one_clean_line_that_parses_back(fields: list[tuple[str, str]]) -> None:
    line = logfmt(fields)
    assert clean(line)
    assert parse_line(line) == fields


@FAST
@given(values)
def test_a_quoted_value_is_clean_and_round_trips(value: str) -> None:
    text = quoted(value)
    assert clean(text)
    assert parse_line("k=" + text) == [("k", value)]


@FAST
@given(values)
def test_a_value_is_bare_only_when_it_needs_no_quoting(value: str) -> None:
    text = quote(value)
    assert text == value or text.startswith('"')


@FAST
@given(values)
def test_runc_log_line_in_text_format_is_clean(message: str) -> None:
    line = runc_log_line("error", message, "text")
    assert clean(line)
    assert dict(parse_line(line))["msg"] == message


@FAST
@given(st.text(max_size=30))
def test_parse_line_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_line(text)
