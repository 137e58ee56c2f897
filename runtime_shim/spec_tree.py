"""Read and copy-on-write one nested field of config.json (``linux.resources.cpu.cpus``).

Modifiers must not mutate their input: ``set_in`` copies only the objects on the path and shares
everything else, so unknown fields survive and the input stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpu_core.errors import ShimError
from runtime_shim.context import Spec


def get_in(spec: Spec, path: Sequence[str]) -> Any:
    """The value at ``path``, or None when it or an object on the way is absent or not an
    object."""
    node: Any = spec
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def set_in(spec: Spec, path: Sequence[str], value: Any, stage: str) -> Spec:
    """A copy of ``spec`` with ``path`` set to ``value``, creating missing objects on the way; a
    field on the way that is not an object is a ``stage`` error (the runtime would reject that
    config.json anyway, and overwriting it would hide the engine's mistake)."""
    if not path:
        raise ValueError("empty path")
    return _set_below(spec, path, value, stage, 0)


def _set_below(node: dict[str, Any], path: Sequence[str], value: Any, stage: str,
               depth: int) -> dict[str, Any]:
    key = path[depth]
    if depth == len(path) - 1:
        return {**node, key: value}
    child = node.get(key, {})
    if not isinstance(child, dict):
        where = ".".join(path[: depth + 1])
        raise ShimError(stage, f"config.json {where} is {type(child).__name__}, not an object")
    return {**node, key: _set_below(child, path, value, stage, depth + 1)}
