"""Reading our logfmt lines back: bare and quoted values, escapes, and odd lines."""

from __future__ import annotations

import json

from ctk.log_parse import parse_line
from gpu_core.logfile import logfmt


def test_bare_values_are_split_on_spaces() -> None:
    """``key=value`` pairs separated by spaces, each value as written."""
    assert parse_line("time=2026-01-01T00:00:00.000001Z level=info cmd=run id=c1") == {
        "time": "2026-01-01T00:00:00.000001Z", "level": "info", "cmd": "run", "id": "c1"}


def test_quoted_value_keeps_spaces_and_equals_signs() -> None:
    """A quoted value runs to its closing quote, spaces and ``=`` included."""
    assert parse_line('msg="a b=c; d" x=1') == {"msg": "a b=c; d", "x": "1"}


def test_backslash_escapes_are_decoded() -> None:
    """``\\n``, ``\\t``, ``\\"``, ``\\\\`` and ``\\uXXXX`` (with surrogate pairs) decode."""
    line = r'msg="one\ntwo\tq\"x\\y \u00e9 \ud83d\ude00 \u0085 \x1b"'
    assert parse_line(line)["msg"] == 'one\ntwo\tq"x\\y é \U0001F600 \x85 \x1b'


def test_what_our_formatter_writes_reads_back_the_same() -> None:
    """Every value gpu_core.logfile.logfmt writes — control characters, quotes, non-ASCII — parses
    back to itself."""
    values = ["plain", "with space", 'quote " inside', "new\nline", "tab\t", "\x00\x1f\x7f",
              "ünïcode", "back\\slash", "", "a=b", "\u2028 line separator"]
    fields = [(f"k{n}", value) for n, value in enumerate(values)]
    assert parse_line(logfmt(fields)) == dict(fields)


def test_json_string_values_parse_like_json() -> None:
    """A value quoted as JSON (what the formatter does today) reads as json.loads reads it."""
    text = "tab\t \u0001 \"q\" \\ é"
    assert parse_line(f"v={json.dumps(text)}")["v"] == text


def test_words_without_equals_are_skipped() -> None:
    """A stray word (an unquoted path with a space, from the launcher) does not shift keys."""
    assert parse_line("id=c1 bundle=/a b gpu=no") == {"id": "c1", "bundle": "/a", "gpu": "no"}


def test_unterminated_quote_runs_to_the_end() -> None:
    """A line cut inside a quoted value keeps what is there."""
    assert parse_line('a=1 msg="cut off') == {"a": "1", "msg": "cut off"}


def test_unknown_escape_keeps_the_character_and_a_bad_hex_escape_too() -> None:
    """``\\q`` is ``q``; ``\\u12`` (too short) is ``u12``."""
    assert parse_line(r'v="\q \u12"') == {"v": "q u12"}


def test_repeated_key_keeps_the_last_value() -> None:
    assert parse_line("a=1 a=2") == {"a": "2"}


def test_empty_values_and_empty_line() -> None:
    """``k=`` is an empty value; an empty or blank line has no fields."""
    assert parse_line("k= j=1") == {"k": "", "j": "1"}
    assert parse_line("") == {} and parse_line("  \t ") == {}
