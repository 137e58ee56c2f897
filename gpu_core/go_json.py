"""Go's ``encoding/json`` decoding (Go 1.19, which runc 1.1 is built with) as types that decode
already-parsed JSON into the values a Go program would hold.

The rules (decode.go), which gpu_core.oci_spec applies to config.json:

- an object key names a struct field by an exact match, else without regard to case by Unicode
  simple folding: besides ASCII case, the long s (U+017F) is ``s`` and the Kelvin sign (U+212A)
  is ``k``; nothing else folds to ASCII, so ``ß`` is never ``ss``; a key naming no field is
  ignored (kept here, as given);
- a key given twice: a later scalar replaces the earlier value; a later object is decoded into
  the struct or map the earlier one filled, so fields it does not name survive; a later array is
  decoded element by element into the slice already there (a struct element keeps what the new
  one does not name, and elements past the new length stay in the backing array, where a later,
  longer array finds them again: golang/go#21092);
- ``null`` sets a pointer, slice, map or interface to nil and leaves anything else as it was;
- map keys are exact, and a map value is decoded afresh, a later key replacing the earlier;
- a value of the wrong JSON type, a fraction or exponent for an integer, or an integer out of the
  field's range is an error (Go carries on but returns it, and runc refuses the file).

Values come out as plain JSON values (dicts, lists, str, int, bool); an unset field is absent.
Only what a type names is walked, so a long string array costs one C-speed check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from gpu_core.strict_json import DuplicateKeys

MISSING: Any = object()
"""An unset field: absent from the decoded object (Go's zero value or nil)."""
STRINGS = frozenset({str})
STRING_LIST: Any = object()
GO_FOLDS = str.maketrans({"\u017f": "s", "\u212a": "k"})


class DecodeError(ValueError):
    """A value Go refuses; ``path`` names where, outermost first, once it has unwound."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def where(self) -> str:
        return "".join(self.path).lstrip(".")


def fold(key: str) -> Optional[str]:
    """``key`` folded as Go compares it with an ASCII field name; None when it matches none."""
    if not key.isascii():
        key = key.translate(GO_FOLDS)
        if not key.isascii():
            return None
    return key.lower()


def describe(value: Any) -> str:
    """The JSON value's Python type, as the project's other config.json messages name it."""
    if isinstance(value, dict):
        return "dict"
    return "list" if isinstance(value, list) else type(value).__name__


def mismatch(wanted: str, value: Any) -> DecodeError:
    return DecodeError(f"expected {wanted}, got {describe(value)} (runc refuses it)")


class Type:
    """A Go type. ``decode(raw, current)`` gives the value after decoding ``raw`` into a
    variable holding ``current`` (MISSING: unset), or MISSING when it ends up unset."""

    nil_on_null = False
    """Pointers, slices, maps and interfaces become nil on ``null``; others ignore it."""
    fast: Optional[type] = None
    """A class whose values decode to themselves whatever ``current`` is (strings, bools)."""

    def decode(self, raw: Any, current: Any) -> Any:
        raise NotImplementedError

    def zero(self) -> Any:
        """The value of a fresh slice element or map value of this type."""
        return MISSING


class Scalar(Type):
    """A string, bool or integer (``pointer``: Go ``*T``, nil on ``null``)."""

    def __init__(self, kind: type, low: int = 0, high: int = 0, pointer: bool = False) -> None:
        self.kind: Any = kind  # str, bool or int: compared with a value's exact class
        self.low, self.high, self.nil_on_null = low, high, pointer
        self.wanted = {str: "a string", bool: "a boolean", int: "an integer"}[kind]
        self.fast = kind if kind is not int else None

    def decode(self, raw: Any, current: Any) -> Any:
        if raw.__class__ is self.kind:
            if self.kind is int and not self.low <= raw <= self.high:
                raise DecodeError(f"{raw} is out of range (runc refuses it)")
            return raw
        if raw is None:
            return MISSING if self.nil_on_null else current
        raise mismatch(self.wanted, raw)

    def zero(self) -> Any:
        return MISSING if self.nil_on_null else self.kind()


class Struct(Type):
    """A Go struct: JSON tag -> field type (``pointer``: a ``*Struct``, nil on ``null``)."""

    def __init__(self, fields: Mapping[str, Type], pointer: bool = True) -> None:
        self.fields = dict(fields)
        self.folded = {tag.lower(): tag for tag in self.fields}
        if len(self.folded) != len(self.fields):
            raise ValueError("two field tags fold alike")
        self.nil_on_null = pointer
        self.quick: dict[str, Any] = {
            tag: STRING_LIST if isinstance(kind, Slice) and kind.element.fast is str
            else kind.fast for tag, kind in self.fields.items()}
        """Per tag, the class of values that decode to themselves (STRING_LIST: a list of
        strings), so the hot path checks a field without a call."""

    def value(self) -> Struct:
        """The same struct held by value (a field, a slice element): ``null`` leaves it."""
        return Struct(self.fields, pointer=False)

    def zero(self) -> Any:
        return MISSING if self.nil_on_null else {}

    def decode(self, raw: Any, current: Any) -> Any:
        if raw.__class__ is dict and current is MISSING:
            return self.fresh(raw)
        if raw.__class__ is not dict:
            if raw is None:
                return MISSING if self.nil_on_null else current
            if not isinstance(raw, dict):
                raise mismatch("an object", raw)
        result = dict(current) if current.__class__ is dict else {}
        fields = self.fields
        pairs = raw.pairs if raw.__class__ is DuplicateKeys else raw.items()
        for key, value in pairs:
            kind = fields.get(key)
            tag = key
            if kind is None:
                tag = self.folded.get(fold(key) or "", "")
                if not tag:
                    result[key] = value  # runc ignores it; kept for whoever reads it next
                    continue
                kind = fields[tag]
            try:
                got = kind.decode(value, result.get(tag, MISSING))
            except DecodeError as error:
                error.path.insert(0, "." + tag)
                raise
            if got is MISSING:
                result.pop(tag, None)
            else:
                result[tag] = got
        return result


    def fresh(self, raw: dict[str, Any]) -> Any:
        """Decode an object without repeated keys into an unset struct: in place, calling out
        only for values that are not already what they decode to (the hot path: 5 000 mounts)."""
        fields, quick = self.fields, self.quick
        drop: list[str] = []
        for key, value in raw.items():
            check = quick.get(key, MISSING)
            if value.__class__ is check:
                continue  # a string or bool field holding one
            if check is STRING_LIST and value.__class__ is list and \
                    set(map(type, value)) <= STRINGS:
                continue  # options, args, env: no call per list
            kind = fields.get(key)
            if kind is None:
                if fold(key) in self.folded:  # a field in another spelling: rename it
                    return self.decode(DuplicateKeys.of(raw), MISSING)
                continue
            try:
                got = kind.decode(value, MISSING)
            except DecodeError as error:
                error.path.insert(0, "." + key)
                raise
            if got is MISSING:
                drop.append(key)
            elif got is not value:
                raw[key] = got  # an existing key: allowed while iterating
        for key in drop:
            del raw[key]
        return raw


class Slice(Type):
    nil_on_null = True

    def __init__(self, element: Type) -> None:
        self.element = element

    def decode(self, raw: Any, current: Any) -> Any:
        if raw.__class__ is not list:
            if raw is None:
                return MISSING
            raise mismatch("a list", raw)
        if not raw:
            return []  # Go makes a new, empty slice
        element = self.element
        if current is MISSING and element.__class__ is Scalar and \
                set(map(type, raw)) == {element.kind} and element.kind is not int:
            return raw  # the common case (env, args, options): checked at C speed
        return self.into(raw, current)

    def into(self, raw: list[Any], current: Any) -> list[Any]:
        """Go's array decoding into the slice ``current`` (its backing array included)."""
        element = self.element
        if current is MISSING and isinstance(element, Struct) and \
                all(item.__class__ is dict for item in raw):
            fresh = element.fresh
            try:
                return [fresh(item) for item in raw]
            except DecodeError:
                pass  # decoded again below, which names the element (decoding is idempotent)
        if current is MISSING:  # into nil: no backing array yet
            current = []
        length = len(current)
        spare = getattr(current, "spare", None)
        backing = [*current, *(spare if spare is not None
                               else [MISSING] * (fresh_cap(length) - length))]
        for i, item in enumerate(raw):
            if i >= len(backing):  # grow: Go copies the first len elements, the rest are zero
                backing = backing[:length] + [MISSING] * (max(len(backing) * 3 // 2, 4) - length)
            if i >= length:
                length = i + 1
            try:
                got = element.decode(item, backing[i])
            except DecodeError as error:
                error.path.insert(0, f"[{i}]")
                raise
            backing[i] = got
        zero = element.zero()
        result = GoSlice((None if zero is MISSING else zero) if item is MISSING else item
                         for item in backing[:len(raw)])
        result.spare = backing[len(raw):]
        return result


class GoSlice(list):  # type: ignore[type-arg]  # holds any JSON value
    """A decoded slice that remembers Go's backing array past its length (``spare``)."""

    spare: list[Any]


def fresh_cap(length: int) -> int:
    """The capacity Go's decoder ends with after appending ``length`` elements to nil."""
    cap = 0
    while cap < length:
        cap = max(cap + cap // 2, 4)
    return cap


class Map(Type):
    """``map[string]T``: exact keys, each value decoded afresh."""

    nil_on_null = True

    def __init__(self, element: Type) -> None:
        self.element = element

    def decode(self, raw: Any, current: Any) -> Any:
        if raw is None:
            return MISSING
        if not isinstance(raw, dict):
            raise mismatch("an object", raw)
        result = dict(current) if current.__class__ is dict else {}
        element = self.element
        pairs = raw.pairs if raw.__class__ is DuplicateKeys else raw.items()
        for key, value in pairs:
            try:
                got = element.decode(value, element.zero())
            except DecodeError as error:
                error.path.insert(0, f"[{key!r}]")
                raise
            result[key] = None if got is MISSING else got
        return result


class Anything(Type):
    """``interface{}``: a fresh value each time (a repeated key inside: the last one)."""

    nil_on_null = True

    def decode(self, raw: Any, current: Any) -> Any:
        return MISSING if raw is None else raw
