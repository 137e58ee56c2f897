"""The hook's MIG-lease duties: poststop releases the container's lease, prestart records the
init pid; both are quiet for containers without one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gpu_core import config as config_mod
from gpu_core.config import Config
from gpu_core.testing import gpu_uuid, mig_uuid
from hook import lease_hooks
from leases import files as lease_files
from leases import host as lease_host
from leases import lock as lease_lock
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice


def config_for(tmp_path: Path) -> Config:
    return config_mod.parse(f"mig: {{lease_dir: {tmp_path}}}\n", "t.yaml")


def hold(tmp_path: Path, cid: str) -> None:
    lease = Lease(holder=Holder(container_id=cid, runtime_root="", bundle="/b",
                                shim_pid=os.getpid()),
                  devices=(LeasedDevice(uuid=mig_uuid(0, 1, 0), profile="1g.10gb",
                                        gpu=gpu_uuid(0), token="mig-1g.10gb"),),
                  created=time.time())
    with lease_lock.locked(str(tmp_path)):
        lease_write.write_lease(str(tmp_path), lease)


def state(cid: str) -> bytes:
    return json.dumps({"ociVersion": "1.2.1", "id": cid, "status": "stopped",
                       "bundle": "/b"}).encode()


def test_poststop_releases_the_lease(tmp_path: Path) -> None:
    """The destroyed container's lease file is gone after poststop."""
    hold(tmp_path, "c1")
    released = lease_hooks.poststop(state("c1"), config_for(tmp_path))
    assert released is not None and released.container_id == "c1"
    assert not (tmp_path / "c1.json").exists()


def test_poststop_keeps_other_containers_leases(tmp_path: Path) -> None:
    """Only the id in the state is released."""
    hold(tmp_path, "c2")
    assert lease_hooks.poststop(state("c1"), config_for(tmp_path)) is None
    assert (tmp_path / "c2.json").exists()


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b'{"id": 5}', b'{"id": "../c1"}'])
def test_poststop_ignores_states_without_a_usable_id(tmp_path: Path, data: bytes) -> None:
    """A state without a usable id releases nothing and raises nothing."""
    hold(tmp_path, "c1")
    assert lease_hooks.poststop(data, config_for(tmp_path)) is None
    assert (tmp_path / "c1.json").exists()


def test_prestart_records_the_init_pid(tmp_path: Path) -> None:
    """The init pid (here: this process) lands in the lease with its start time."""
    hold(tmp_path, "c1")
    lease_hooks.prestart(config_for(tmp_path), "c1", os.getpid())
    holder = lease_files.read_lease(str(tmp_path / "c1.json")).holder
    assert holder.init_pid == os.getpid()
    assert holder.init_start == lease_host.process_start(os.getpid())


def test_prestart_without_lease_writes_nothing(tmp_path: Path) -> None:
    """No lease: the store directory is not even created."""
    lease_hooks.prestart(config_for(tmp_path / "none"), "c1", os.getpid())
    assert not (tmp_path / "none").exists()
