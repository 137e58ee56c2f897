"""Decide and clamp ``process.oomScoreAdj``.

Without CAP_SYS_RESOURCE runc cannot lower its own score, and it fails the whole start
(``failed to update /proc/self/oom_score_adj: Permission denied``); so a value below ours is
raised to ours, whatever asked for it — an OOM policy must never cost a container its start.
"""

from __future__ import annotations

from typing import Any, Optional

from runtime_shim.context import Context, Notes, Spec

OOM_MIN, OOM_MAX = -1000, 1000


def wanted(spec: Spec, ctx: Context) -> tuple[Optional[int], str, Notes]:
    """The value asked for before clamps, where it came from, and notes."""
    process: Any = spec.get("process")
    explicit = process.get("oomScoreAdj") if isinstance(process, dict) else None
    if isinstance(explicit, int) and not isinstance(explicit, bool):
        return explicit, "spec", []
    choice = ctx.policy(spec)
    policy = choice.policy
    notes = [f"oom: {choice.ignored}"] if choice.ignored else []  # only here (PolicyChoice)
    if policy is not None and policy.oom_score_adj is not None:
        return policy.oom_score_adj, f"policy {policy.name}", notes
    if ctx.gpu and ctx.config.oom.inherit:
        return ctx.host.oom_score_adj, "inherited", notes
    return None, "", notes


def clamp(value: int, source: str, ctx: Context) -> tuple[int, Notes]:
    """Apply the range, the annotation floor and the capability clamp, noting each."""
    notes: Notes = []
    result = min(max(value, OOM_MIN), OOM_MAX)
    if result != value:
        notes.append(f"oom: {source} value {value} clamped to {result} (range -1000..1000)")
    floor = ctx.config.oom.floor
    if source.startswith("policy") and result < floor:
        notes.append(f"oom: {source} value {result} clamped to floor {floor} (config oom.floor)")
        result = floor
    own = ctx.host.oom_score_adj
    if not ctx.host.cap_sys_resource and result < own:
        notes.append(f"oom: {source} value {result} clamped to {own}: no CAP_SYS_RESOURCE, "
                     f"cannot go below the runtime's own oom_score_adj")
        result = own
    return result, notes


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    value, source, notes = wanted(spec, ctx)
    if value is None:
        return spec, notes
    result, clamp_notes = clamp(value, source, ctx)
    notes += clamp_notes
    process: Any = spec.get("process")
    if not isinstance(process, dict):
        return spec, notes
    current = process.get("oomScoreAdj")
    if isinstance(current, int) and not isinstance(current, bool) and current == result:
        return spec, notes
    notes.append(f"oom: oomScoreAdj {result} ({source})")
    return {**spec, "process": {**process, "oomScoreAdj": result}}, notes
