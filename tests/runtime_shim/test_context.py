"""runtime_shim.context: what several modifiers share is computed once per create."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest
from gpu_core.testing import fake_inventory
from runtime_shim import pipeline, policy_choice
from runtime_shim.context import Context
from runtime_shim.policy_choice import PolicyChoice

HOST = fake_inventory(4)
GPU1 = DeviceRequest(devices=("1",), capabilities=frozenset({"compute", "utility"}))
POLICIES = """
policies:
  guaranteed: {oom_score_adj: -800, numa: true, cgroup_parent: gpu.slice}
"""


def context(config_text: str = POLICIES, request: Any = GPU1) -> Context:
    return Context(config=config_mod.parse(config_text, "test.yaml"), request=request,
                   discover=lambda: HOST)


def spec(policy: str = "guaranteed") -> dict[str, Any]:
    return {"process": {"env": ["PATH=/bin"]}, "linux": {"resources": {}},
            "annotations": {policy_choice.ANNOTATION: policy}}


def counting_choose(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = policy_choice.choose

    def choose(*args: Any, **kwargs: Any) -> PolicyChoice:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_choice, "choose", choose)
    return calls


def test_the_pipeline_chooses_the_policy_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_choose(monkeypatch)
    pipeline.run(spec(), context())
    assert len(calls) == 1


def test_the_policy_choice_names_the_policy_and_its_source() -> None:
    choice = context().policy(spec())
    assert (choice.policy.name if choice.policy else None, choice.source, choice.ignored) == \
        ("guaranteed", "annotation", "")


def test_an_ignored_unknown_policy_is_data_for_the_oom_modifier() -> None:
    choice = context(POLICIES + "policy: {unknown: ignore}\n").policy(spec("platinum"))
    assert choice.policy is None and choice.ignored.startswith("policy: ignored unknown policy")


def test_an_unknown_policy_raises_for_every_asker() -> None:
    ctx = context()
    for _ in range(2):
        with pytest.raises(ShimError, match="unknown policy"):
            ctx.policy(spec("platinum"))


def test_the_selection_is_made_once_per_request() -> None:
    discovered: list[int] = []

    def discover() -> Any:
        discovered.append(1)
        return HOST

    ctx = Context(config=config_mod.defaults(), request=GPU1, discover=discover)
    assert ctx.selection(GPU1) is ctx.selection(GPU1)
    assert len(discovered) == 1


def test_the_selection_follows_a_replaced_request() -> None:
    ctx = context()
    first = ctx.selection(GPU1)
    ctx.request = dataclasses.replace(GPU1, devices=("2",))
    second = ctx.selection(ctx.request)
    assert ([g.index for g in first.gpus], [g.index for g in second.gpus]) == ([1], [2])
