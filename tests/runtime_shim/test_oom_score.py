"""oom_score_adj: inherit, policy by annotation, and the clamps."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from gpu_core.errors import ShimError
from runtime_shim.cdi_injection import Injection
from runtime_shim.modifiers import oom_score
from runtime_shim.testing import GPU0, context

GUARANTEED = {"ai.scheduling.policy": "guaranteed"}


def spec_with(oom: Optional[int] = None, annotations: Optional[dict[str, str]] = None,
              ) -> dict[str, Any]:
    process: dict[str, Any] = {"args": ["/bin/true"]}
    if oom is not None:
        process["oomScoreAdj"] = oom
    spec: dict[str, Any] = {"process": process}
    if annotations:
        spec["annotations"] = annotations
    return spec


CASES = [
    # (description, spec, gpu, own score, has CAP_SYS_RESOURCE, expected oomScoreAdj)
    ("plain container untouched", spec_with(), False, 0, False, None),
    ("gpu container inherits own value", spec_with(), True, 300, False, 300),
    ("policy value with capability", spec_with(annotations=GUARANTEED), False, 0, True, -800),
    ("policy clamped to own value without capability", spec_with(annotations=GUARANTEED),
     False, 0, False, 0),
    ("explicit value clamped without capability", spec_with(-500), False, 100, False, 100),
    ("explicit value kept with capability", spec_with(-500), False, 100, True, -500),
    ("explicit value above range clamped", spec_with(5000), False, 0, True, 1000),
    ("explicit value wins over annotation", spec_with(200, GUARANTEED), False, 0, True, 200),
]


@pytest.mark.parametrize(("description", "spec", "gpu", "own", "cap", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_oom_score_whole_spec(description: str, spec: dict[str, Any], gpu: bool, own: int,
                              cap: bool, expected: Optional[int]) -> None:
    """The resulting process.oomScoreAdj follows source and clamps."""
    ctx = context(request=GPU0 if gpu else None, oom_score_adj=own, cap_sys_resource=cap)
    result, _ = oom_score.apply(spec, ctx)
    assert result["process"].get("oomScoreAdj") == expected


def test_annotation_value_respects_floor() -> None:
    """A policy chosen by annotation never goes below oom.floor."""
    ctx = context("oom: {floor: -500}\n")
    result, notes = oom_score.apply(spec_with(annotations=GUARANTEED), ctx)
    assert result["process"]["oomScoreAdj"] == -500
    assert any("floor -500" in n for n in notes)


def test_capability_clamp_is_noted() -> None:
    """The clamp for a missing CAP_SYS_RESOURCE is written to the notes for the log."""
    ctx = context(oom_score_adj=0, cap_sys_resource=False)
    _, notes = oom_score.apply(spec_with(annotations=GUARANTEED), ctx)
    assert any("no CAP_SYS_RESOURCE" in n and "-800" in n for n in notes)


@pytest.mark.parametrize(("description", "spec", "gpu", "own", "cap", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_oom_score_is_idempotent(description: str, spec: dict[str, Any], gpu: bool, own: int,
                                 cap: bool, expected: Optional[int]) -> None:
    """A second pass over the result changes nothing."""
    ctx = context(request=GPU0 if gpu else None, oom_score_adj=own, cap_sys_resource=cap)
    once, _ = oom_score.apply(spec, ctx)
    assert oom_score.apply(once, ctx)[0] is once


def test_unknown_policy_is_an_error_by_default() -> None:
    """An annotation naming no configured policy fails the create."""
    with pytest.raises(ShimError, match="unknown policy 'nope'"):
        oom_score.apply(spec_with(annotations={"ai.scheduling.policy": "nope"}), context())


def test_unknown_policy_ignored_when_configured() -> None:
    """policy.unknown: ignore leaves the spec alone and notes why."""
    ctx = context("policy: {unknown: ignore}\n")
    spec = spec_with(annotations={"ai.scheduling.policy": "nope"})
    result, notes = oom_score.apply(spec, ctx)
    assert result is spec and "ignored unknown policy" in notes[0]


def test_container_with_engine_injected_gpu_inherits_like_a_gpu_container() -> None:
    """NVIDIA_VISIBLE_DEVICES=void but /dev/nvidia0 from CDI: still a GPU container."""
    ctx = context(oom_score_adj=300, injected=Injection((0,), ("/dev/nvidia0 (195:0)",)))
    result, notes = oom_score.apply(spec_with(), ctx)
    assert result["process"]["oomScoreAdj"] == 300
    assert notes == ["oom: oomScoreAdj 300 (inherited)"]


def test_cdi_annotation_alone_does_not_make_a_gpu_container() -> None:
    """An annotation may only make the shim do less: no inherited score from it."""
    ctx = context(oom_score_adj=300, injected=Injection((), ("annotation cdi.k8s.io/x",)))
    assert oom_score.apply(spec_with(), ctx)[0].get("process") == {"args": ["/bin/true"]}
