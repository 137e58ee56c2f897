"""The Context: discovery, the policy and the selection computed once, and the MIG lease store
the mig-lease modifier takes from (the node's real one by default, whatever a caller set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.inventory import Inventory
from gpu_core.request import DeviceRequest
from gpu_core.testing import fake_inventory
from leases.dry_run import DryRunStore
from leases.store import FileStore
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
    ctx.request = GPU1._replace(devices=("2",))
    second = ctx.selection(ctx.request)
    assert ([g.index for g in first.gpus], [g.index for g in second.gpus]) == ([1], [2])


def make(text: str) -> Context:
    return Context(config=config_mod.parse(text, "t.yaml"), request=None)


def test_default_store_is_the_real_one_under_the_lease_dir(tmp_path: Path) -> None:
    """No store set: the file store of ``mig.lease_dir``, made once."""
    ctx = make(f"mig: {{lease_dir: {tmp_path}}}\n")
    store = ctx.lease_store()
    assert isinstance(store, FileStore) and store.directory == str(tmp_path)
    assert ctx.lease_store() is store
    assert ctx.lease_dir() == str(tmp_path)


def test_fault_points_need_a_simulated_host(tmp_path: Path) -> None:
    """The real store honours test fault points only when the configuration names a simulated
    host."""
    plain = make(f"mig: {{lease_dir: {tmp_path}}}\n").lease_store()
    simulated = make(f"simulation: {{dir: {tmp_path}}}\n").lease_store()
    assert isinstance(plain, FileStore) and not plain.faults
    assert isinstance(simulated, FileStore) and simulated.faults


def test_a_store_set_by_the_caller_is_used(tmp_path: Path) -> None:
    """gpu-ctk plan sets a dry-run store: the context hands out that one."""
    ctx = make("")
    ctx.leases = DryRunStore(str(tmp_path))
    assert ctx.lease_store() is ctx.leases


def test_inventory_is_discovered_once() -> None:
    """Every modifier that asks gets the first discovery's inventory."""
    calls: list[int] = []
    inventory = fake_inventory(1)

    def discover() -> Inventory:
        calls.append(1)
        return inventory

    ctx = make("")
    ctx.discover = discover
    assert ctx.inventory() is ctx.inventory() is inventory
    assert calls == [1]
