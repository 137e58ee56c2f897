"""Word-level request rules: booleans, special device words, capabilities."""

from __future__ import annotations

import re
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_core.errors import ShimError
from gpu_core.request_words import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    device_token_kind,
    driver_capabilities,
    is_index,
    parse_bool,
    pick_devices,
    supported_capabilities,
)


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_true_words(value: str) -> None:
    assert parse_bool(value) is True


@pytest.mark.parametrize("value", [None, "", "0", "f", "F", "FALSE", "false", "False", "yes",
                                   "on", "tRue", " true", "2"])
def test_everything_else_is_false(value: Optional[str]) -> None:
    assert parse_bool(value) is False


@pytest.mark.parametrize(("tokens", "expected"), [
    ([], None), (["void"], None), (["0", "VOID"], None), (["all", "none"], ("all",)),
    (["none", "all"], ()), (["0", "None"], ()), (["ALL", "bogus"], ("all",)),
    (["0", "1"], ("0", "1")),
])
def test_pick_devices(tokens: list[str], expected: Optional[tuple[str, ...]]) -> None:
    assert pick_devices(tokens) == expected


def test_pick_devices_in_order_reads_tokens_before_the_word() -> None:
    """A mount list is read in order: a malformed token before `all` fails, one after it is
    not read; CDI names before it are left for resolution."""
    with pytest.raises(ShimError, match="unknown device bogus"):
        pick_devices(["bogus", "all"], in_order=True)
    assert pick_devices(["all", "bogus"], in_order=True) == ("all",)
    assert pick_devices(["nvidia.com/gpu=0", "none"], in_order=True) == ()


def test_pick_devices_checks_shapes_without_a_special_word() -> None:
    with pytest.raises(ShimError, match="unknown device bogus"):
        pick_devices(["0", "bogus"])


@pytest.mark.parametrize(("value", "expected"), [
    ("all", CAPABILITIES), (" all ", CAPABILITIES), ("", frozenset()),
    ("compute, video", frozenset({"compute", "video"})),
])
def test_supported_capabilities(value: str, expected: frozenset[str]) -> None:
    assert supported_capabilities(value) == expected


def test_unknown_supported_capability_is_a_config_error() -> None:
    with pytest.raises(ShimError) as info:
        supported_capabilities("compute,telepathy")
    assert info.value.stage == "config" and "telepathy" in info.value.cause


@pytest.mark.parametrize(("value", "legacy", "expected", "source"), [
    (None, False, DEFAULT_CAPABILITIES, "default"), ("", True, DEFAULT_CAPABILITIES, "default"),
    (None, True, CAPABILITIES, "legacy"), (",", False, frozenset(), "env"),
    ("  ", True, frozenset(), "env"), ("all,bogus", False, CAPABILITIES, "env"),
])
def test_driver_capabilities(value: Optional[str], legacy: bool, expected: frozenset[str],
                             source: str) -> None:
    assert driver_capabilities(value, legacy, CAPABILITIES) == (expected, source)


def test_capability_beyond_the_supported_ones_is_refused() -> None:
    with pytest.raises(ShimError, match=r"unsupported capability video \(allowed: compute\)"):
        driver_capabilities("compute,video", False, frozenset({"compute"}))


@pytest.mark.parametrize("token, expected", [
    ("0", True), ("7", True), ("123456789", True), ("007", True), ("", False),
    ("1234567890", False), ("-1", False), ("+1", False), (" 1", False), ("1 ", False),
    ("1\n", False), ("\u0661", False), ("\uff11", False), ("\u00b2", False), ("1.0", False),
])
def test_an_index_is_one_to_nine_ascii_digits(token: str, expected: bool) -> None:
    assert is_index(token) is expected
    assert (device_token_kind(token) == "index") is expected


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
       | st.text(alphabet="0123456789\u0661\uff11\u00b2 -", max_size=12))
def test_the_index_check_agrees_with_the_index_pattern(token: str) -> None:
    assert is_index(token) is bool(re.fullmatch(r"[0-9]{1,9}", token, re.ASCII))
