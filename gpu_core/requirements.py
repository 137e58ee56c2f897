"""The ``NVIDIA_REQUIRE_*`` DSL (README §Device requests), with libnvidia-container's meaning.

A requirement is alternatives separated by spaces (OR); an alternative is conditions separated
by commas (AND); so ``cuda>=11.0 brand=tesla,driver>=450`` reads
``cuda>=11.0 OR (brand=tesla AND driver>=450)``. A condition is ``key op value`` with no spaces:
``cuda``/``driver``/``arch`` compare as dotted versions numerically (``12.10 > 12.2``,
``12.0 == 12``; digits and dots only, empty components skipped: ``12.`` is ``12``), ``brand``
compares as a case-insensitive name with ``=``/``!=`` only. Keys are case-insensitive; the
operator ``!`` alone reads as ``!=`` (libnvidia-container matches an operator by its prefix).
An alternative of only commas ends the evaluation: it holds when no alternative came before it,
otherwise the requirement fails, as libnvidia-container's evaluator has it. Every requirement
must hold for every selected GPU; a fact that is unknown (empty) satisfies its conditions, as
libnvidia-container assumes when no device is visible.
"""

import re
from collections.abc import Sequence
from typing import NamedTuple, Optional

from gpu_core.errors import ShimError, one_line

STAGE = "requirements"
MAX_REQUIREMENT_CHARS = 16384
"""CUDA images carry a few hundred to ~2000 characters; anything far beyond is not a requirement."""
MAX_VALUE_CHARS = 64

VERSION_KEYS = ("cuda", "driver", "arch")
NAME_KEYS = ("brand",)
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")

_VERSION = r"[0-9][0-9.]*"  # matched through re's cache: compiled on first use
_UINTMAX = "18446744073709551615"
"""libnvidia-container reads each version component with strtoumax: UINTMAX_MAX is an error."""
_OPERATOR_CHARS = "<>=!"
_OPERATOR_PREFIXES = {"!": "!="}
"""Operator runs libnvidia-container accepts as a prefix of an operator (strncmp on the run)."""


class RequirementError(ShimError):
    """A requirement string that does not parse; raised before anything is checked."""

    def __init__(self, cause: str) -> None:
        super().__init__(STAGE, cause)


def _shown(value: str, limit: int = 80) -> str:
    """An untrusted value, escaped and bounded, safe to put in a one-line message."""
    return one_line(repr(value)[1:-1], limit)


class GpuFacts(NamedTuple):
    """What requirements are checked against for one selected GPU (a MIG device: its parent).

    ``cuda`` and ``driver`` are host-wide; ``arch`` (compute capability, ``"8.0"``) and
    ``brand`` (``"tesla"``) belong to the GPU and are empty when no GPU is selected. An empty
    fact is unknown, and conditions on it hold.
    """

    cuda: str
    driver: str
    arch: str = ""
    brand: str = ""

    def value(self, key: str) -> str:
        return str(getattr(self, key))


class Condition(NamedTuple):
    """One ``key op value`` comparison; ``text`` is how the image wrote it, for messages."""

    key: str
    op: str
    value: str
    text: str

    def holds(self, facts: GpuFacts) -> bool:
        fact = facts.value(self.key)
        if fact == "":
            return True
        if self.key in NAME_KEYS:
            equal = fact.casefold() == self.value.casefold()
            return equal if self.op == "=" else not equal
        if not _is_version(fact) or len(fact) > MAX_VALUE_CHARS:
            raise ShimError(STAGE, f"cannot compare: host {self.key} {_shown(fact)} is not a "
                                   f"version")
        return _compare(_version_key(fact), self.op, _version_key(self.value))


class Requirement(NamedTuple):
    """A parsed requirement: OR over ``alternatives``, each an AND over its conditions.

    No alternatives (an empty or blank string) means no constraint; an empty alternative (one
    written as only commas) ends the evaluation.
    """

    text: str
    alternatives: tuple[tuple[Condition, ...], ...]

    def failing(self, facts: GpuFacts) -> Optional[Condition]:
        """None when satisfied; else the condition to blame: the first failing condition of
        the first alternative (the one images put first, ``cuda>=X``, as libnvidia-container
        reports it)."""
        blame: Optional[Condition] = None
        for alternative in self.alternatives:
            if not alternative:  # only commas: the evaluator stops with what it had so far
                return blame
            failed = next((c for c in alternative if not c.holds(facts)), None)
            if failed is None:
                return None
            blame = blame or failed
        return blame


def _is_version(text: str) -> bool:
    """Digits and dots starting with a digit, each component below UINTMAX_MAX."""
    if not re.fullmatch(_VERSION, text, re.ASCII):
        return False
    for part in text.split("."):
        digits = part.lstrip("0")
        if len(digits) > len(_UINTMAX) or (len(digits) == len(_UINTMAX) and digits >= _UINTMAX):
            return False
    return True


def _version_key(text: str) -> tuple[tuple[int, str], ...]:
    """A sort key comparing dotted versions numerically without int() on untrusted digits
    (Python caps int() of long strings); empty and trailing zero components do not count."""
    parts = [part.lstrip("0") for part in text.split(".") if part]
    while parts and parts[-1] == "":
        parts.pop()
    return tuple((len(part), part) for part in parts)


def _compare(left: tuple[tuple[int, str], ...], op: str, right: tuple[tuple[int, str], ...]
             ) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def parse_condition(text: str) -> Condition:
    """Parse one ``key op value`` condition; raise RequirementError naming what is wrong."""
    where = f"invalid condition {_shown(text)}"
    end = next((i for i, ch in enumerate(text) if ch in _OPERATOR_CHARS), -1)
    if end <= 0:
        raise RequirementError(f"{where}: expected key, operator and value (e.g. cuda>=12.0)")
    key = text[:end].lower()
    if not key.isascii() or key not in VERSION_KEYS + NAME_KEYS:
        raise RequirementError(f"{where}: unknown key {_shown(text[:end], 32)}; expected "
                               "cuda, driver, arch or brand")
    rest = text[end:]
    op_len = len(rest) - len(rest.lstrip(_OPERATOR_CHARS))
    op, value = rest[:op_len], rest[op_len:]
    op = _OPERATOR_PREFIXES.get(op, op)
    if op not in OPERATORS:
        raise RequirementError(f"{where}: unknown operator {_shown(op, 16)}; expected "
                               "=, !=, <, <=, > or >=")
    if key in NAME_KEYS and op not in ("=", "!="):
        raise RequirementError(f"{where}: {key} compares with = or != only")
    if value == "":
        raise RequirementError(f"{where}: missing value")
    if len(value) > MAX_VALUE_CHARS:
        raise RequirementError(f"{where}: value longer than {MAX_VALUE_CHARS} characters")
    if key not in NAME_KEYS and not _is_version(value):  # a brand is any text
        raise RequirementError(f"{where}: {key} must be a version such as 12.2")
    return Condition(key=key, op=op, value=value, text=text)


def parse_requirement(text: str) -> Requirement:
    """Parse one requirement string (the value of one ``NVIDIA_REQUIRE_*`` variable).

    Empty alternatives and conditions (doubled spaces or commas) are skipped, as the NVIDIA
    tools do; a malformed condition anywhere is an error even if an earlier alternative would
    be satisfied, so a broken image fails the same way on every host. A term of only commas
    becomes an empty alternative (see ``Requirement.failing``).
    """
    if len(text) > MAX_REQUIREMENT_CHARS:
        raise RequirementError(f"requirement longer than {MAX_REQUIREMENT_CHARS} characters: "
                               f"{_shown(text)}")
    alternatives = []
    for term in text.split(" "):  # spaces only, as libnvidia-container splits: a tab is no OR
        if term:
            alternatives.append(tuple(parse_condition(part) for part in term.split(",") if part))
    return Requirement(text=text, alternatives=tuple(alternatives))


def check(requirements: Sequence[str], facts: Sequence[GpuFacts]) -> None:
    """Check every requirement (each one ANDed) against every entry of ``facts``.

    Pass one GpuFacts per selected GPU (a MIG device contributes its parent); with no GPU
    selected, pass one with ``arch`` and ``brand`` empty so only the host-wide keys count.
    Raise RequirementError for a malformed requirement and ShimError
    ``requirements: unsatisfied condition: <condition as written>`` for the first one unmet.
    """
    if not facts:
        raise ValueError("check() needs at least the host's facts")
    parsed = [parse_requirement(text) for text in requirements]
    for requirement in parsed:
        for gpu in facts:
            failed = requirement.failing(gpu)
            if failed is not None:
                raise ShimError(STAGE, f"unsatisfied condition: {_shown(failed.text)}")
