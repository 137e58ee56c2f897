"""The Context: discovery at most once, and the MIG lease store the mig-lease modifier takes
from (the node's real one by default, whatever a caller set otherwise)."""

from __future__ import annotations

from pathlib import Path

from gpu_core import config as config_mod
from gpu_core.discovery import Inventory
from gpu_core.testing import fake_inventory
from leases.dry_run import DryRunStore
from leases.store import FileStore
from runtime_shim.context import Context


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
