"""JSON as runc reads it: Python's ``json`` accepts documents Go's parser rejects or reads
differently (NaN and Infinity; numbers that overflow and would be written back as
``Infinity``). Every untrusted JSON document we parse (config.json, the OCI state, daemon.json)
goes through ``loads``. A key given twice is refused, except for config.json, whose repeated keys
gpu_core.oci_spec resolves exactly as runc's decoder does (``duplicates=True`` keeps them)."""

from __future__ import annotations

import json
import math
from typing import Any, Union

from gpu_core.errors import one_line


class StrictJsonError(ValueError):
    """The document is not JSON we accept; the message says why in one line."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object hook: a key given twice is an error, not last-one-wins."""
    result = dict(pairs)  # at C speed: this runs for every object of a 5 000-entry config.json
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJsonError(f"duplicate key {one_line(key, 80)!r}")
            seen.add(key)
    return result


class DuplicateKeys(dict):  # type: ignore[type-arg]  # a JSON object: any values
    """A JSON object with a repeated key: the dict is last-one-wins, ``pairs`` holds every
    key/value pair in document order."""

    pairs: list[tuple[str, Any]]

    @classmethod
    def of(cls, mapping: dict[str, Any]) -> DuplicateKeys:
        """``mapping``'s pairs as a DuplicateKeys (to walk them through the general path)."""
        kept = cls(mapping)
        kept.pairs = list(mapping.items())
        return kept


def keep_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object hook that keeps repeated keys for gpu_core.oci_spec to resolve."""
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    kept = DuplicateKeys(result)
    kept.pairs = pairs
    return kept


def no_constant(name: str) -> Any:
    """``json`` hook for NaN and Infinity."""
    raise StrictJsonError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """``json`` hook for numbers: refuse one that overflows to infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"number {one_line(text, 40)} is out of range")
    return value


def loads(data: Union[bytes, str], duplicates: bool = False) -> Any:
    """Parse ``data``; every failure is a ``StrictJsonError`` with a one-line message:
    ``duplicate key 'k'`` (unless ``duplicates``: then an object with a repeated key is a
    ``DuplicateKeys``), ``NaN is not a JSON number``, ``nested too deeply`` or
    ``invalid JSON: <what and where>``."""
    try:
        return json.loads(data, object_pairs_hook=keep_duplicates if duplicates else unique_keys,
                          parse_constant=no_constant,
                          parse_float=finite_float)
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise StrictJsonError(f"invalid JSON: {exc.msg}: line {exc.lineno} column "
                              f"{exc.colno}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise StrictJsonError(f"invalid JSON: {one_line(str(exc), 200)}") from None
