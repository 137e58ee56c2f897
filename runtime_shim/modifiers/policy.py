"""Say which workload policy a container got, and apply its swap and block-IO edits.

A policy's other edits have their own modifiers, reading the same choice: ``oom_score`` (with its
clamps), ``cgroup_parent`` and ``numa``. This one notes the choice once, with everything the
policy asks for, so the log and ``gpu-ctk plan`` show it even where an edit turns out a no-op.
"""

from __future__ import annotations

from typing import Any

from gpu_core.config import Policy
from runtime_shim.context import Context, Notes, Spec
from runtime_shim.spec_tree import get_in, set_in

STAGE = "policy"
MEMORY = ("linux", "resources", "memory")
SWAP = (*MEMORY, "swap")
BLKIO_WEIGHT = ("linux", "resources", "blockIO", "weight")


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    choice = ctx.policy(spec)
    policy = choice.policy
    if policy is None:
        return spec, []  # an ignored unknown name: PolicyChoice.ignored, the OOM modifier's
    notes = [f"policy: {policy.name} (from {choice.source}): {describe(policy)}"]
    result = spec
    if policy.swap_off:
        result, more = swap_off(result)
        notes += more
    if policy.blkio_weight is not None:
        result, more = blkio_weight(result, policy.blkio_weight, ctx.host.io_weight)
        notes += more
    return result, notes


def describe(policy: Policy) -> str:
    """Everything ``policy`` asks for, in one line: ``oom_score_adj -800, swap off, ...``."""
    parts = []
    if policy.oom_score_adj is not None:
        parts.append(f"oom_score_adj {policy.oom_score_adj}")
    if policy.cgroup_parent:
        parts.append(f"cgroup parent {policy.cgroup_parent}")
    if policy.swap_off:
        parts.append("swap off")
    if policy.numa:
        parts.append("numa placement")
    if policy.blkio_weight is not None:
        parts.append(f"blkio weight {policy.blkio_weight}")
    return ", ".join(parts) or "no edits"


def swap_off(spec: Spec) -> tuple[Spec, Notes]:
    """Set ``memory.swap`` (memory plus swap, in OCI) to the memory limit: no swap at all. Without
    a limit there is nothing to equal, and swap is left as the engine set it."""
    limit: Any = get_in(spec, (*MEMORY, "limit"))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        return spec, ["policy: swap off skipped: no linux.resources.memory.limit set"]
    current: Any = get_in(spec, SWAP)
    if current == limit and not isinstance(current, bool):
        return spec, []
    return (set_in(spec, SWAP, limit, STAGE),
            [f"policy: linux.resources.memory.swap {limit} (equal to the memory limit: no swap; "
             f"was {'unset' if current is None else current})"])


def blkio_weight(spec: Spec, weight: int, possible: bool = True) -> tuple[Spec, Notes]:
    """Set ``blockIO.weight`` (the config schema holds it to the kernel's 10-1000) where the
    low-level runtime can apply it; elsewhere the runtime would fail the start, so skip it."""
    current: Any = get_in(spec, BLKIO_WEIGHT)
    if current == weight and not isinstance(current, bool):
        return spec, []
    if not possible:
        return spec, [f"policy: blkio weight {weight} skipped: the low-level runtime cannot set "
                      "a block-IO weight on this host (no weight file it writes in the blkio/io "
                      "cgroup)"]
    return (set_in(spec, BLKIO_WEIGHT, weight, STAGE),
            [f"policy: linux.resources.blockIO.weight {weight} "
             f"(was {'unset' if current is None else current})"])
