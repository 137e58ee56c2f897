"""The NVIDIA_REQUIRE_* DSL: parsing, precedence, comparisons and the unsatisfied message."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_core.errors import ShimError
from gpu_core.requirements import (
    Condition,
    GpuFacts,
    RequirementError,
    check,
    parse_condition,
    parse_requirement,
)

A100 = GpuFacts(cuda="12.2", driver="535.104.05", arch="8.0", brand="Tesla")
T4 = GpuFacts(cuda="12.2", driver="535.104.05", arch="7.5", brand="Tesla")
RTX = GpuFacts(cuda="12.2", driver="535.104.05", arch="8.6", brand="GeForce")
HOST_ONLY = GpuFacts(cuda="12.2", driver="535.104.05")


def satisfied(requirement: str, facts: Sequence[GpuFacts] = (A100,)) -> bool:
    try:
        check([requirement], facts)
    except RequirementError:
        raise
    except ShimError:
        return False
    return True


# --- parsing ----------------------------------------------------------------------------------

def test_condition_parts() -> None:
    """A condition splits into lower-cased key, operator and value, keeping its text."""
    assert parse_condition("CUDA>=12.2") == Condition("cuda", ">=", "12.2", "CUDA>=12.2")


def test_space_is_or_and_comma_is_and() -> None:
    """`a b,c` is a OR (b AND c): comma binds tighter than space."""
    req = parse_requirement("cuda>=11.0 brand=tesla,driver>=450")
    assert [[c.text for c in alt] for alt in req.alternatives] == [
        ["cuda>=11.0"], ["brand=tesla", "driver>=450"]]


def test_empty_items_are_skipped() -> None:
    """Doubled spaces and commas add no empty conditions or alternatives."""
    req = parse_requirement("  cuda>=11,,driver>=450,   ")
    assert [[c.text for c in alt] for alt in req.alternatives] == [["cuda>=11", "driver>=450"]]


@pytest.mark.parametrize(("text", "holds"), [
    (", cuda>=99", True), ("cuda>=99 , brand=tesla", False), (",, cuda>=99", True),
    ("cuda>=99  brand=tesla", True),
])
def test_alternative_of_only_commas_ends_the_evaluation(text: str, holds: bool) -> None:
    """libnvidia-container stops at an alternative of only commas: met when it comes first,
    unmet after an alternative that failed."""
    assert satisfied(text) is holds


def test_a_lone_exclamation_mark_is_not_equal() -> None:
    """libnvidia-container matches the operator run as a prefix: `!` reads as `!=`."""
    assert parse_condition("cuda!12").op == "!="
    assert satisfied("cuda!11") and not satisfied("cuda!12.2")


def test_brand_value_is_any_text() -> None:
    """A brand is compared as text, whatever its characters."""
    assert not satisfied("brand=te$la/x")
    assert satisfied("brand!=a=b")


MALFORMED = [
    ("no operator", "cuda12", "expected key, operator and value"),
    ("no key", ">=12", "expected key, operator and value"),
    ("unknown key", "memory>=40", "unknown key memory"),
    ("unknown operator", "cuda=>12", "unknown operator =>"),
    ("double equals", "cuda==12", "unknown operator =="),
    ("not-equal written <>", "cuda<>12", "unknown operator <>"),
    ("missing value", "driver>=", "missing value"),
    ("brand ordered", "brand>tesla", "brand compares with = or != only"),
    ("version with letters", "cuda>=12.2a", "cuda must be a version"),
    ("version with v prefix", "driver>=v450", "driver must be a version"),
    ("version starting with a dot", "arch>=.8", "arch must be a version"),
    ("version of dots only", "cuda>=..", "cuda must be a version"),
    ("component at UINTMAX_MAX", "cuda<18446744073709551615", "cuda must be a version"),
    ("component past UINTMAX_MAX", "cuda<1.99999999999999999999", "cuda must be a version"),
    ("overlong value", "cuda>=" + "1" * 65, "value longer than 64 characters"),
]


@pytest.mark.parametrize(("description", "text", "why"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_condition_is_a_requirement_error(description: str, text: str,
                                                    why: str) -> None:
    """A malformed condition raises RequirementError at stage `requirements`, saying why."""
    with pytest.raises(RequirementError) as info:
        parse_requirement(f"driver>=400 {text}")
    assert info.value.stage == "requirements"
    assert why in info.value.cause


def test_malformed_condition_after_a_satisfied_one_still_fails() -> None:
    """The whole string is parsed up front, so a broken image fails on every host."""
    with pytest.raises(RequirementError):
        check(["cuda>=1 cuda>>2"], [A100])


def test_overlong_requirement_is_refused_briefly() -> None:
    """A requirement over 16384 characters is refused with a short message."""
    with pytest.raises(RequirementError) as info:
        parse_requirement("cuda>=1 " * 3000)
    assert "longer than 16384" in info.value.cause and len(str(info.value)) < 200


def test_requirement_error_is_a_shim_error() -> None:
    """Callers that catch ShimError also catch malformed requirements."""
    assert issubclass(RequirementError, ShimError)


def test_keys_are_case_insensitive() -> None:
    """Keys match whatever their case, as in libnvidia-container."""
    assert satisfied("Driver>=500,ARCH>=8.0")


# --- comparisons ------------------------------------------------------------------------------

VERSIONS = [
    # (requirement, satisfied on A100: cuda 12.2, driver 535.104.05, arch 8.0)
    ("cuda>=12.2", True),
    ("cuda>12.2", False),
    ("cuda=12.2", True),
    ("cuda=12.2.0", True),
    ("cuda!=12.2.0", False),
    ("cuda<=12.2", True),
    ("cuda<12.2", False),
    ("cuda<12.10", True),
    ("cuda>=12.10", False),
    ("cuda>=12", True),
    ("cuda>12", True),
    ("cuda<13", True),
    ("cuda>=012.02", True),
    ("driver>=535.104", True),
    ("driver>535.104.5", False),
    ("driver<535.104.6", True),
    ("driver>=450", True),
    ("driver<536", True),
    ("arch>=8.0", True),
    ("arch>=8", True),
    ("arch<8.6", True),
    ("arch>=9.0", False),
    ("arch=8", True),
    ("cuda>=18446744073709551614.0", False), ("cuda>=12.", True), ("cuda=12..2", True),
    ("cuda=012.02", True),
]


@pytest.mark.parametrize(("text", "expected"), VERSIONS)
def test_versions_compare_numerically(text: str, expected: bool) -> None:
    """Versions compare component by component as numbers; trailing zeros do not count."""
    assert satisfied(text) is expected


BRANDS = [
    ("brand=tesla", True), ("brand=TESLA", True), ("brand=Tesla", True),
    ("brand!=tesla", False), ("brand=geforce", False), ("brand!=geforce", True),
]


@pytest.mark.parametrize(("text", "expected"), BRANDS)
def test_brand_compares_case_insensitively(text: str, expected: bool) -> None:
    """Brand is a name compared without regard to case."""
    assert satisfied(text) is expected


PRECEDENCE = [
    ("first alternative true", "cuda>=12.0 brand=geforce,driver>=900", True),
    ("second alternative true", "cuda>=13.0 brand=tesla,driver>=450", True),
    ("second alternative half true", "cuda>=13.0 brand=tesla,driver>=900", False),
    ("and of two trues", "cuda>=12.0,driver>=500", True),
    ("and with one false", "cuda>=12.0,driver>=900", False),
]


@pytest.mark.parametrize(("description", "text", "expected"), PRECEDENCE,
                         ids=[c[0] for c in PRECEDENCE])
def test_or_of_ands(description: str, text: str, expected: bool) -> None:
    """Some alternative must have all its conditions hold."""
    assert satisfied(text) is expected


def test_real_cuda_image_requirement_accepts_a_tesla_with_new_driver() -> None:
    """A CUDA 12.2 image's NVIDIA_REQUIRE_CUDA passes on a host with CUDA 12.2."""
    text = ("cuda>=12.2 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 "
            "brand=nvidia,driver>=470,driver<471 brand=geforce,driver>=525,driver<526")
    assert satisfied(text)


def test_real_cuda_image_requirement_accepts_forward_compat_tesla() -> None:
    """An older driver passes through the image's Tesla forward-compatibility alternative."""
    old = GpuFacts(cuda="11.4", driver="470.82.01", arch="8.0", brand="Tesla")
    assert satisfied("cuda>=12.2 brand=tesla,driver>=470,driver<471", [old])


# --- check: facts, selection and the message --------------------------------------------------

def test_unsatisfied_message_names_the_condition_as_written() -> None:
    """The error is exactly `requirements: unsatisfied condition: <condition>`."""
    with pytest.raises(ShimError) as info:
        check(["CUDA>=99.0"], [A100])
    assert str(info.value) == "requirements: unsatisfied condition: CUDA>=99.0"


def test_unsatisfied_message_blames_the_first_alternative() -> None:
    """When every alternative fails, the first alternative's failing condition is named."""
    with pytest.raises(ShimError) as info:
        check(["cuda>=13.0 brand=geforce,driver>=470"], [A100])
    assert info.value.cause == "unsatisfied condition: cuda>=13.0"


def test_unsatisfied_message_blames_the_failing_condition_of_an_and() -> None:
    """Within an AND, the first condition that fails is named, not the first written."""
    with pytest.raises(ShimError) as info:
        check(["driver>=450,arch>=9.0,brand=tesla"], [A100])
    assert info.value.cause == "unsatisfied condition: arch>=9.0"


def test_every_requirement_is_anded() -> None:
    """Each requirement must hold on its own; the first unmet one is reported."""
    with pytest.raises(ShimError) as info:
        check(["cuda>=12.0", "driver>=900", "arch>=9.0"], [A100])
    assert info.value.cause == "unsatisfied condition: driver>=900"


def test_every_selected_gpu_must_satisfy() -> None:
    """A requirement on arch holds only if it holds for every selected GPU."""
    with pytest.raises(ShimError) as info:
        check(["arch>=8.0"], [A100, T4])
    assert info.value.cause == "unsatisfied condition: arch>=8.0"


def test_per_gpu_alternatives_may_differ() -> None:
    """Each GPU may satisfy a different alternative of the same requirement."""
    check(["brand=tesla brand=geforce,arch>=8.6"], [A100, RTX])


def test_no_gpu_checks_host_wide_keys_only() -> None:
    """With no GPU selected, arch and brand conditions hold and cuda/driver still count."""
    check(["arch>=99.0,brand=quadro"], [HOST_ONLY])
    with pytest.raises(ShimError):
        check(["arch>=99.0,cuda>=99.0"], [HOST_ONLY])


def test_unknown_host_version_satisfies() -> None:
    """An unknown (empty) CUDA version does not fail cuda conditions, as in libnvidia-container."""
    check(["cuda>=99.0"], [GpuFacts(cuda="", driver="535")])


def test_empty_requirement_list_passes() -> None:
    """No requirements means nothing to check."""
    check([], [A100])


def test_blank_requirement_passes() -> None:
    """A requirement with no conditions constrains nothing."""
    check(["  ", ","], [A100])


def test_check_needs_facts() -> None:
    """Calling check without even the host's facts is a programming error."""
    with pytest.raises(ValueError):
        check(["cuda>=1"], [])


def test_unparseable_host_fact_is_a_requirements_error() -> None:
    """A host version that is not a version cannot be compared and is reported as such."""
    with pytest.raises(ShimError) as info:
        check(["driver>=450"], [GpuFacts(cuda="12.2", driver="N/A")])
    assert info.value.cause == "cannot compare: host driver N/A is not a version"


# --- properties -------------------------------------------------------------------------------

DSL_PIECES = st.sampled_from(["cuda", "driver", "arch", "brand", "CUDA", ">=", "<=", "=", "!=",
                              "<", ">", "!", "12.2", "8.0", "tesla", ",", " ", ".", "0", "x"])
DSL_TEXT = st.one_of(st.text(max_size=60), st.lists(DSL_PIECES, max_size=12).map("".join))


@settings(max_examples=400, deadline=None)
@given(text=DSL_TEXT)
def test_parse_raises_only_requirement_errors(text: str) -> None:
    """Any string parses or raises RequirementError, with a one-line message."""
    try:
        parse_requirement(text)
    except RequirementError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400


@settings(max_examples=300, deadline=None)
@given(text=DSL_TEXT)
def test_check_raises_only_shim_errors(text: str) -> None:
    """Checking any string against real facts returns or raises ShimError."""
    try:
        check([text], [A100, HOST_ONLY])
    except ShimError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(text=DSL_TEXT)
def test_parse_is_deterministic(text: str) -> None:
    """Parsing the same string twice gives equal results or the same error."""
    def outcome() -> object:
        try:
            return parse_requirement(text)
        except RequirementError as exc:
            return str(exc)

    assert outcome() == outcome()


VERSION_TEXT = st.lists(st.integers(0, 10**6), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts)))


@settings(max_examples=200, deadline=None)
@given(a=VERSION_TEXT, b=VERSION_TEXT)
def test_version_order_matches_integer_tuples(a: str, b: str) -> None:
    """`cuda<b` holds exactly when a's numbers, trailing zeros dropped, sort before b's."""
    def key(v: str) -> tuple[int, ...]:
        parts = [int(p) for p in v.split(".")]
        while parts and parts[-1] == 0:
            parts.pop()
        return tuple(parts)

    facts = [GpuFacts(cuda=a, driver="1")]
    assert satisfied(f"cuda<{b}", facts) is (key(a) < key(b))
    assert satisfied(f"cuda={b}", facts) is (key(a) == key(b))
