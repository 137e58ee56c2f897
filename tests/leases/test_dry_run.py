"""The dry-run lease store of ``gpu-ctk plan``: the decision a start would make now, from the
real store's state, with nothing written."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from lease_records import Host, make_lease, mig, put

from gpu_core.errors import ShimError
from gpu_core.selection import parse_profile
from gpu_core.testing import fake_inventory
from leases.allocation import Holder, Lease, held_by, resolve
from leases.dry_run import DryRunStore
from leases.interface import Decide, LeaseStore

INVENTORY = fake_inventory(1, {0: ("1g.10gb",) * 3})


def decider(cid: str) -> Decide:
    wanted = parse_profile("mig-1g.10gb")
    assert wanted is not None

    def decide(others: Mapping[str, Lease]) -> Lease:
        found = resolve([wanted], [], INVENTORY, held_by(list(others.values())))
        return Lease(holder=Holder(container_id=cid, runtime_root="/r", bundle="/b",
                                   shim_pid=1), devices=found.devices, created=time.time())
    return decide


def test_offers_what_live_others_do_not_hold_and_writes_nothing(tmp_path: Path) -> None:
    """A live holder's device is skipped; the store's files stay exactly as they were."""
    put(tmp_path, make_lease("a", (mig(0),)))
    before = sorted(os.listdir(tmp_path))
    store: LeaseStore = DryRunStore(str(tmp_path), observer=Host(known=("a",)))
    got = store.allocate("c1", decider("c1"))
    assert store.dry_run
    assert [d.uuid for d in got.lease.devices] == [mig(1)]
    assert sorted(os.listdir(tmp_path)) == before


def test_stale_leases_are_reported_not_reclaimed(tmp_path: Path) -> None:
    """A dead holder's device is offered and its lease named as one a start would reclaim."""
    put(tmp_path, make_lease("dead", (mig(0),)))
    store = DryRunStore(str(tmp_path), observer=Host())
    got = store.allocate("c1", decider("c1"))
    assert [d.uuid for d in got.lease.devices] == [mig(0)]
    assert [(r.lease.container_id, r.reason != "") for r in got.reclaimed] == [("dead", True)]
    assert (tmp_path / "dead.json").exists()


def test_own_lease_is_left_out(tmp_path: Path) -> None:
    """A lease under the planned container's own id is one a start replaces: not held."""
    put(tmp_path, make_lease("c1", (mig(0),)))
    got = DryRunStore(str(tmp_path), observer=Host(known=("c1",))).allocate("c1", decider("c1"))
    assert [d.uuid for d in got.lease.devices] == [mig(0)]


def test_records_what_it_would_take_and_releases_nothing(tmp_path: Path) -> None:
    """``taken`` lists each lease it would take; releasing gives nothing back."""
    store = DryRunStore(str(tmp_path / "none"), observer=Host())
    got = store.allocate("c1", decider("c1"))
    assert store.taken == [got.lease]
    assert store.release("c1", "failed-create") is None
    assert not (tmp_path / "none").exists()


def test_a_container_id_that_cannot_hold_a_lease_is_refused(tmp_path: Path) -> None:
    """The same id check as the real store, before anything is read."""
    with pytest.raises(ShimError, match="cannot hold a MIG lease"):
        DryRunStore(str(tmp_path)).allocate("../x", decider("../x"))
