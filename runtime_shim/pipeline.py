"""The modifier pipeline: which modifiers run, in which order (plain data), and running them."""

import importlib
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

from runtime_shim.context import Context, Notes, Spec

Modifier = Callable[[Spec, Context], "tuple[Spec, Notes]"]
"""A pure function of (spec, context) returning the new spec (the same object if unchanged)."""


def lazy(module: str) -> Modifier:
    """``module``'s ``apply``, imported on the first call: a container without a GPU request
    never pays for discovery, selection and lease modules it does not use."""

    def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
        modify = cast(Modifier, importlib.import_module(module).apply)
        return modify(spec, ctx)

    apply.__qualname__ = apply.__name__ = f"{module}.apply"
    return apply


ORDER: tuple[tuple[str, Modifier], ...] = (
    # first: turns profile tokens into the UUIDs all others see
    ("mig-lease", lazy("runtime_shim.modifiers.mig_lease")),
    ("devices", lazy("runtime_shim.modifiers.devices")),
    ("hook", lazy("runtime_shim.modifiers.hook_injection")),
    # spec mode only: the driver's files as mounts and the spec hook (README §Spec mode)
    ("driver-mounts", lazy("runtime_shim.modifiers.driver_mounts")),
    ("policy", lazy("runtime_shim.modifiers.policy")),
    ("cgroup", lazy("runtime_shim.modifiers.cgroup_parent")),
    # after cgroup: placement stays inside the cpuset of the parent the container lands in
    ("numa", lazy("runtime_shim.modifiers.numa")),
    ("oom", lazy("runtime_shim.modifiers.oom_score")),
)

GPU_ONLY = frozenset({"mig-lease", "devices", "hook", "driver-mounts", "numa"})
"""Modifiers that return their input for a container that is no GPU container (``Context.gpu``:
no GPU request and no GPU node injected by the engine); for such a
container they are skipped, never imported (tests/runtime_shim/test_pipeline.py holds them to
it)."""


class Result(NamedTuple):
    """The final spec, whether anything changed, and each modifier's notes in order."""

    spec: Spec
    changed: bool
    notes: list[tuple[str, Notes]]


def run(spec: Spec, ctx: Context,
        order: Sequence[tuple[str, Modifier]] = ORDER) -> Result:
    """Apply every modifier in ``order``; a modifier with nothing to do returns its input."""
    current = spec
    notes: list[tuple[str, Notes]] = []
    for name, modify in order:
        if not ctx.gpu and name in GPU_ONLY:
            continue
        current, these = modify(current, ctx)
        if these:
            notes.append((name, these))
    return Result(spec=current, changed=current is not spec, notes=notes)
