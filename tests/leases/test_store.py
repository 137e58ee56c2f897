"""The node's real MIG lease store: allocation under the lock, reclaiming, the init pid, gc,
directory trust, and many processes allocating at once."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from lease_records import Host, make_lease, mig, put

from gpu_core.errors import ShimError
from gpu_core.selection import parse_profile
from gpu_core.testing import fake_inventory
from leases import faults as lease_faults
from leases import files as lease_files
from leases import host as lease_host
from leases import lock as lease_lock
from leases import release as lease_release
from leases import store as lease_store
from leases.allocation import Holder, Lease, held_by, resolve
from leases.interface import LeaseStore

HOST = fake_inventory(2, {0: ("1g.10gb",) * 7, 1: ("3g.40gb",) * 2})


def decider(cid: str, token: str = "mig-1g.10gb", pid: int = 100) -> Any:
    """A decide function that resolves ``token`` against HOST like the modifier does."""
    wanted = parse_profile(token)
    assert wanted is not None

    def decide(others: Mapping[str, Lease]) -> Lease:
        found = resolve([wanted], [], HOST, held_by(list(others.values())))
        return Lease(holder=Holder(container_id=cid, runtime_root="/r", bundle="/b",
                                   shim_pid=pid, shim_start=1),
                     devices=found.devices, created=time.time())
    return decide


class TestAllocate:
    def test_commits_one_file_per_container(self, tmp_path: Path) -> None:
        """The lease lands in <dir>/<id>.json and reads back equal."""
        got = lease_store.allocate(str(tmp_path), "c1", decider("c1"), observer=Host())
        assert [lease.container_id for lease in lease_files.read_all(str(tmp_path)).leases] \
            == ["c1"]
        assert lease_files.read_lease(str(tmp_path / "c1.json")) == got.lease
        assert got.lease.devices[0].uuid == mig(0)

    def test_live_leases_are_not_given_again(self, tmp_path: Path) -> None:
        """Devices held by live others are skipped."""
        put(tmp_path, make_lease("a", (mig(0), mig(1))))
        got = lease_store.allocate(str(tmp_path), "c1", decider("c1"),
                                   observer=Host(known=("a",)))
        assert got.lease.devices[0].uuid == mig(2)
        assert got.reclaimed == ()

    def test_stale_leases_are_reclaimed(self, tmp_path: Path) -> None:
        """A lease whose holder is gone is removed and its device given out again."""
        put(tmp_path, make_lease("dead", (mig(0),)))
        got = lease_store.allocate(str(tmp_path), "c1", decider("c1"), observer=Host())
        assert got.lease.devices[0].uuid == mig(0)
        assert [r.lease.container_id for r in got.reclaimed] == ["dead"]
        assert not (tmp_path / "dead.json").exists()

    def test_refusal_changes_nothing_and_frees_the_lock(self, tmp_path: Path) -> None:
        """Nothing free: the error propagates, the store is as before, the lock is free."""
        for i in range(2):
            put(tmp_path, make_lease(f"h{i}", (mig(i, gpu=1),)))
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(ShimError, match=r"no free MIG instance of profile 3g\.40gb"):
            lease_store.allocate(str(tmp_path), "c1", decider("c1", "mig-3g.40gb"),
                                 observer=Host(known=("h0", "h1")))
        assert sorted(os.listdir(tmp_path)) == before
        with lease_lock.locked(str(tmp_path), timeout=0.1):
            pass

    def test_leftover_temp_files_are_removed_under_the_lock(self, tmp_path: Path) -> None:
        """A temp file seen while holding the lock is a dead writer's: removed and reported."""
        (tmp_path / ".c9.4242.tmp").write_text('{"format": 1, "contai')
        got = lease_store.allocate(str(tmp_path), "c1", decider("c1"), observer=Host())
        assert got.removed_temps == (".c9.4242.tmp",)
        assert not (tmp_path / ".c9.4242.tmp").exists()

    def test_own_lease_from_this_process_is_replaced(self, tmp_path: Path) -> None:
        """Allocating twice in one process (idempotent modifiers) replaces its own lease."""
        lease_store.allocate(str(tmp_path), "c1", decider("c1", pid=100), pid=100,
                             observer=Host(running={100: 1}))
        again = lease_store.allocate(str(tmp_path), "c1", decider("c1", pid=100), pid=100,
                                     observer=Host(running={100: 1}))
        assert again.lease.devices[0].uuid == mig(0)
        assert len(lease_files.read_all(str(tmp_path)).leases) == 1

    def test_own_id_held_by_a_live_other_start_is_refused(self, tmp_path: Path) -> None:
        """Two starts of one id at once: the second is refused, the first keeps its lease."""
        put(tmp_path, make_lease("c1", (mig(0),), pid=200))
        with pytest.raises(ShimError, match=r"another start of container c1 \(pid 200\)"):
            lease_store.allocate(str(tmp_path), "c1", decider("c1"), pid=100,
                                 observer=Host(running={200: 1}))

    def test_own_id_of_an_existing_container_is_refused(self, tmp_path: Path) -> None:
        """Creating an id the runtime still knows keeps that container's lease."""
        put(tmp_path, make_lease("c1", (mig(3),), pid=200))
        with pytest.raises(ShimError, match="container c1 already exists and holds MIG"):
            lease_store.allocate(str(tmp_path), "c1", decider("c1"), pid=100,
                                 observer=Host(known=("c1",)))

    def test_own_id_left_by_a_dead_start_is_replaced(self, tmp_path: Path) -> None:
        """A dead start's lease under the same id is reclaimed and replaced."""
        put(tmp_path, make_lease("c1", (mig(3),), pid=200))
        got = lease_store.allocate(str(tmp_path), "c1", decider("c1"), pid=100, observer=Host())
        assert got.lease.devices[0].uuid == mig(0)
        assert [r.lease.container_id for r in got.reclaimed] == ["c1"]

    def test_busy_lock_times_out_with_one_line(self, tmp_path: Path) -> None:
        """A lock held past the timeout is `lease store ... busy`, not a hang."""
        fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(ShimError, match=r"^mig: lease store .* busy"):
                lease_store.allocate(str(tmp_path), "c1", decider("c1"), observer=Host(),
                                     timeout=0.05)
        finally:
            os.close(fd)

    def test_lease_file_is_private(self, tmp_path: Path) -> None:
        """The store directory and lease files are root-only."""
        store = tmp_path / "leases"
        lease_store.allocate(str(store), "c1", decider("c1"), observer=Host())
        assert (store.stat().st_mode & 0o777, (store / "c1.json").stat().st_mode & 0o777) \
            == (0o700, 0o600)


class TestFileStore:
    def test_takes_and_gives_back_through_the_interface(self, tmp_path: Path) -> None:
        """The real store commits what ``decide`` chose, and a failed create gives it back."""
        store: LeaseStore = lease_store.FileStore(str(tmp_path))
        got = store.allocate("c1", decider("c1", pid=os.getpid()))
        assert not store.dry_run
        assert lease_files.read_lease(str(tmp_path / "c1.json")) == got.lease
        assert store.release("c1", "failed-create") == got.lease
        assert sorted(os.listdir(tmp_path)) == [".lock"]


class TestRecordInitAndGc:
    def test_record_init_adds_the_init_pid(self, tmp_path: Path) -> None:
        """The prestart path records the init pid and its start time."""
        put(tmp_path, make_lease("c1", (mig(0),)))
        lease_store.record_init(str(tmp_path), "c1", 4321, Host(running={4321: 9}))
        holder = lease_files.read_lease(str(tmp_path / "c1.json")).holder
        assert (holder.init_pid, holder.init_start) == (4321, 9)

    def test_gc_reclaims_stale_and_leftovers_only(self, tmp_path: Path) -> None:
        """gc removes stale leases, temp files and unreadable files; live leases stay."""
        put(tmp_path, make_lease("live", (mig(0),)))
        put(tmp_path, make_lease("dead", (mig(1),)))
        (tmp_path / ".x.1.tmp").write_text("{")
        (tmp_path / "junk.json").write_text("[]")
        collected = lease_store.gc(str(tmp_path), Host(known=("live",)))
        assert [r.lease.container_id for r in collected.reclaimed] == ["dead"]
        assert collected.removed == (".x.1.tmp",)
        assert sorted(os.listdir(tmp_path)) == [".lock", "junk.json", "live.json"]
        assert "junk.json" in collected.kept[0] and "may be alive" in collected.kept[0]


KILL_SCRIPT = """
import sys, time
from leases import store as lease_store
from leases.interface import LeaseStore
from leases.allocation import Holder, Lease
lease = Lease(holder=Holder(container_id="victim", runtime_root="", bundle="/b",
                            shim_pid=0), devices=(), created=time.time())
lease_store.allocate(sys.argv[1], "victim", lambda others: lease, faults=True)
"""


def test_killed_writer_leaves_a_readable_store(tmp_path: Path) -> None:
    """SIGKILL mid-write: readers report the half-written temp file, the lock is free, and the
    next allocation removes the leftover and succeeds."""
    env = {**os.environ, lease_faults.FAULT_ENV: "mig-lease-before-commit:sleep"}
    writer = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], env=env)
    temp = tmp_path / f".victim.{writer.pid}.tmp"
    deadline = time.monotonic() + 20
    while not temp.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    writer.kill()
    writer.wait()
    snapshot = lease_files.read_all(str(tmp_path))
    assert snapshot.leases == ()
    assert snapshot.problems == (f"incomplete write {temp.name} (writer pid {writer.pid} gone)",)
    got = lease_store.allocate(str(tmp_path), "c1", decider("c1"), observer=Host(), timeout=1)
    assert got.removed_temps == (temp.name,)
    assert sorted(os.listdir(tmp_path)) == [".lock", "c1.json"]


WORKERS = 16


def _worker(directory: str, root: str, index: int, barrier: Any, results: Any) -> None:
    """One 'shim': allocate a 1g.10gb, then 'create' its runtime state like runc would."""
    cid = f"w{index}"
    wanted = parse_profile("mig-1g.10gb")
    assert wanted is not None

    def decide(others: Mapping[str, Lease]) -> Lease:
        found = resolve([wanted], [], HOST, held_by(list(others.values())))
        return Lease(holder=Holder(container_id=cid, runtime_root=root, bundle="/b",
                                   shim_pid=os.getpid(),
                                   shim_start=lease_host.process_start(os.getpid())),
                     devices=found.devices, created=time.time())

    barrier.wait()
    try:
        got = lease_store.allocate(directory, cid, decide)
    except ShimError as error:
        results.put((cid, None, str(error)))
        return
    os.mkdir(os.path.join(root, cid))
    results.put((cid, got.lease.devices[0].uuid, ""))


def test_many_processes_allocate_without_duplicates_or_losses(tmp_path: Path) -> None:
    """16 processes race for 7 instances: exactly 7 win distinct devices, each recorded once,
    and the 9 others get the nothing-free error."""
    ctx = multiprocessing.get_context("fork")
    directory, root = tmp_path / "leases", tmp_path / "runtime"
    root.mkdir()
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(str(directory), str(root), i, barrier,
                                                 results)) for i in range(WORKERS)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    winners = {cid: uuid for cid, uuid, _ in outcomes if uuid}
    errors = [error for _, uuid, error in outcomes if not uuid]
    assert len(winners) == 7
    assert sorted(winners.values()) == sorted(mig(s) for s in range(7))
    assert len(errors) == 9
    assert all(e.startswith("mig: no free MIG instance of profile 1g.10gb: 7 exist, held by ")
               for e in errors)
    stored = lease_files.read_all(str(directory))
    assert stored.problems == ()
    assert {lease.container_id: lease.devices[0].uuid for lease in stored.leases} == winners


class TestDirectoryTrust:
    """The lease directory steers which devices root hands out: it is ours only when nobody
    else made it or can write it (gpu_core/private_dirs.py)."""

    @pytest.mark.parametrize("setup", ["0777", "0770", "foreign", "symlink"])
    def test_allocation_moves_a_directory_others_control_aside(self, tmp_path: Path,
                                                               setup: str) -> None:
        store = tmp_path / "leases"
        canary = tmp_path / "canary"
        canary.mkdir(mode=0o700)
        if setup == "symlink":
            store.symlink_to(canary)
        else:
            store.mkdir(mode=0o700)
            if setup == "foreign":
                os.chown(store, 65534, 65534)
            else:
                store.chmod(int(setup, 8))
        got = lease_store.allocate(str(store), "c1", decider("c1"), observer=Host())
        assert got.lease.devices and any("moved aside" in p for p in got.problems)
        assert list(canary.iterdir()) == []
        info = os.lstat(store)
        assert (info.st_uid, info.st_mode & 0o7777) == (os.geteuid(), 0o700)
        assert (store / "c1.json").is_file()

    @pytest.mark.parametrize("umask", [0o000, 0o077, 0o377])
    def test_modes_do_not_depend_on_the_umask(self, tmp_path: Path, umask: int) -> None:
        store = tmp_path / "run" / "leases"
        old = os.umask(umask)
        try:
            lease_store.allocate(str(store), "c1", decider("c1"), observer=Host())
        finally:
            os.umask(old)
        assert store.stat().st_mode & 0o777 == 0o700
        assert store.parent.stat().st_mode & 0o777 == 0o755
        assert (store / "c1.json").stat().st_mode & 0o777 == 0o600
        assert (store / ".lock").stat().st_mode & 0o777 == 0o600

    def test_allocation_under_a_parent_others_can_write_is_refused(self, tmp_path: Path) -> None:
        parent = tmp_path / "run"
        parent.mkdir()
        parent.chmod(0o777)
        with pytest.raises(ShimError, match=r"^mig: lease store .* writable by others"):
            lease_store.allocate(str(parent / "leases"), "c1", decider("c1"), observer=Host())
        assert list(parent.iterdir()) == []

    @pytest.mark.parametrize("setup", ["0777", "foreign"])
    def test_gc_release_and_list_leave_a_foreign_directory_alone(self, tmp_path: Path,
                                                                 setup: str) -> None:
        """Nothing is deleted in (or read as leases from) a directory that is not ours."""
        put(tmp_path / "leases", make_lease("dead", (mig(1),)))
        store = tmp_path / "leases"
        (store / ".x.1.tmp").write_text("{")
        os.chown(store, 65534, 65534) if setup == "foreign" else store.chmod(0o777)
        before = sorted(os.listdir(store))
        with pytest.raises(ShimError, match="not trusted"):
            lease_store.gc(str(store), Host())
        assert lease_release.release(str(store), "dead", "poststop") is None
        with pytest.raises(ShimError, match="not trusted"):
            lease_files.read_all(str(store))
        assert sorted(os.listdir(store)) == before

    def test_fifo_planted_at_a_temp_name_does_not_block_a_write(self, tmp_path: Path) -> None:
        tmp_path.chmod(0o700)
        os.mkfifo(tmp_path / f".c1.{os.getpid()}.tmp")
        put(tmp_path, make_lease("c1", (mig(0),)))
        assert lease_files.read_lease(str(tmp_path / "c1.json")).container_id == "c1"
