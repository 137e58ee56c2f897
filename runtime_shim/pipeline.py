"""The modifier pipeline: which modifiers run, in which order (plain data), and running them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from runtime_shim.context import Context, Notes, Spec
from runtime_shim.modifiers import (
    cgroup_parent,
    devices,
    hook_injection,
    mig_lease,
    numa,
    oom_score,
    policy,
)

Modifier = Callable[[Spec, Context], "tuple[Spec, Notes]"]
"""A pure function of (spec, context) returning the new spec (the same object if unchanged)."""

ORDER: tuple[tuple[str, Modifier], ...] = (
    ("mig-lease", mig_lease.apply),  # first: turns profile tokens into the UUIDs all others see
    ("devices", devices.apply),
    ("hook", hook_injection.apply),
    ("policy", policy.apply),
    ("numa", numa.apply),
    ("cgroup", cgroup_parent.apply),
    ("oom", oom_score.apply),
)


@dataclass
class Result:
    """The final spec, whether anything changed, and each modifier's notes in order."""

    spec: Spec
    changed: bool
    notes: list[tuple[str, Notes]] = field(default_factory=list)


def run(spec: Spec, ctx: Context,
        order: Sequence[tuple[str, Modifier]] = ORDER) -> Result:
    """Apply every modifier in ``order``; a modifier with nothing to do returns its input."""
    current = spec
    notes: list[tuple[str, Notes]] = []
    for name, modify in order:
        current, these = modify(current, ctx)
        if these:
            notes.append((name, these))
    return Result(spec=current, changed=current is not spec, notes=notes)
