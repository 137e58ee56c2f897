"""Unreadable lease files fail closed (leases/salvage.py, through leases/store.py and
leases/release.py): one table of every kind of bad entry, each checked for what allocation,
gc, release and `gpu-ctk leases list` do with it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from ctk.main import main
from gpu_core.errors import ShimError
from gpu_core.selection import parse_profile
from gpu_core.testing import fake_inventory, gpu_uuid, mig_uuid
from leases import files as lease_files
from leases import release as lease_release
from leases import salvage as lease_salvage
from leases import store as lease_store
from leases.allocation import Holder, Lease, LeasedDevice, held_by, resolve
from leases.interface import After

INVENTORY = fake_inventory(1, {0: ("1g.10gb",) * 3})
FIRST = mig_uuid(0, 1, 0)
"""The device a free allocation takes first: bad entries below claim it."""
LIVE_PID = os.getpid()
DEAD_PID = 2 ** 30


class Host:
    """Nothing known to the runtime; only ``running`` pids run."""

    def __init__(self, running: tuple[int, ...] = ()) -> None:
        self.running = running

    def runtime_knows(self, runtime_root: str, container_id: str) -> bool:
        return False

    def process_start(self, pid: int) -> Optional[int]:
        return 1 if pid in self.running else None


def record(cid: str = "held", pid: int = LIVE_PID, fmt: int = 1) -> dict[str, Any]:
    lease = Lease(holder=Holder(container_id=cid, runtime_root="/r", bundle="/b", shim_pid=pid),
                  devices=(LeasedDevice(uuid=FIRST, profile="1g.10gb", gpu=gpu_uuid(0),
                                        token="mig-1g.10gb"),),
                  created=time.time())
    return {**lease.to_json(), "format": fmt}


def text(data: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(data)


def symlink(path: Path) -> None:
    target = path.parent.parent / "elsewhere.json"
    target.write_text(json.dumps(record()))
    path.symlink_to(target)


BAD: dict[str, tuple[Callable[[Path], None], bool]] = {
    # kind: (how the entry held.json is made, whether its device can still be read from it)
    "corrupt": (text('{"format": 1, "devices": [{"uuid": "' + FIRST + '", "pro'), True),
    "corrupt without a device": (text("{"), False),
    "other format version": (text(json.dumps(record(fmt=2))), True),
    "oversized": (text(json.dumps(record()) + " " * (lease_files.MAX_LEASE_BYTES + 1)), False),
    "empty": (text(""), False),
    "not UTF-8": (lambda path: path.write_bytes(b"\xff\xfe{"), False),
    "nested too deeply": (text("[" * 100000), False),
    "directory": (lambda path: path.mkdir(), False),
    "fifo": (lambda path: os.mkfifo(path), False),
    "symlink": (symlink, False),
    "a list": (text(json.dumps([record()])), True),
    "a string": (text(json.dumps("MIG-but-not-hex")), False),
    "null": (text("null"), False),
    "wrong field type": (text(json.dumps({**record(), "devices": {"uuid": FIRST}})), True),
    "another container": (text(json.dumps(record(cid="someone-else"))), True),
}


@pytest.fixture(params=sorted(BAD))
def bad(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bool]:
    store = tmp_path / "leases"
    store.mkdir(mode=0o700)
    make, readable = BAD[request.param]
    make(store / "held.json")
    return store, readable


def allocate(store: Path, cid: str = "newcomer") -> Lease:
    wanted = parse_profile("mig-1g.10gb")
    assert wanted is not None

    def decide(others: Mapping[str, Lease]) -> Lease:
        found = resolve([wanted], [], INVENTORY, held_by(list(others.values())))
        return Lease(holder=Holder(container_id=cid, runtime_root="/r", bundle="/b",
                                   shim_pid=LIVE_PID), devices=found.devices, created=0.0)

    return lease_store.allocate(str(store), cid, decide, observer=Host((LIVE_PID,))).lease


def test_its_device_is_never_handed_to_another_container(bad: tuple[Path, bool]) -> None:
    """A device read from the entry is held; an entry whose devices cannot be read holds any,
    so allocation is refused in one line naming it."""
    store, readable = bad
    if readable:
        assert FIRST not in [d.uuid for d in allocate(store).devices]
    else:
        with pytest.raises(ShimError, match=r"unreadable lease held\.json .*any MIG device"):
            allocate(store)


def test_gc_keeps_it_and_says_why(bad: tuple[Path, bool]) -> None:
    store, _ = bad
    collected = lease_store.gc(str(store), Host((LIVE_PID,)))
    assert (store / "held.json").exists() or (store / "held.json").is_symlink()
    assert collected.removed == () and "held.json" in collected.kept[0]


def test_its_own_container_cannot_take_new_leases_over_it(bad: tuple[Path, bool]) -> None:
    store, _ = bad
    with pytest.raises(ShimError, match="container held cannot take new leases"):
        allocate(store, "held")


def test_release_after_a_failed_create_keeps_it(bad: tuple[Path, bool]) -> None:
    store, _ = bad
    lease_release.release(str(store), "held", "failed-create")
    assert os.path.lexists(store / "held.json")


def test_list_shows_it_as_unreadable_with_the_reason(
        bad: tuple[Path, bool], capsys: pytest.CaptureFixture[str]) -> None:
    store, readable = bad
    assert main(["leases", "list", "--json", "--dir", str(store)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["status"] for row in rows} == {"unreadable"}
    assert {row["device"] for row in rows} == ({FIRST.lower()} if readable else {"*"})
    assert all(row["reason"].startswith("held.json: ") for row in rows)
    assert main(["leases", "list", "--dir", str(store)]) == 0
    assert "unreadable (held.json: " in capsys.readouterr().out


def test_entry_whose_holder_is_provably_gone_is_reclaimed(tmp_path: Path) -> None:
    """A newer format that keeps the holder fields: gc removes it once its holder is gone."""
    store = tmp_path / "leases"
    store.mkdir(mode=0o700)
    (store / "held.json").write_text(json.dumps(record(pid=DEAD_PID, fmt=2)))
    assert lease_store.gc(str(store), Host()).removed == ("held.json",)


@pytest.mark.parametrize("after", ["poststop", "delete"])
def test_entry_of_a_dying_container_goes_with_it(tmp_path: Path, after: After) -> None:
    """poststop / delete of the container its file name gives: the entry is released."""
    store = tmp_path / "leases"
    store.mkdir(mode=0o700)
    (store / "held.json").write_text("{")
    lease_release.release(str(store), "held", after)
    assert not (store / "held.json").exists()


@pytest.mark.parametrize("after", ["poststop", "delete"])
def test_entry_naming_another_container_is_not_released_with_this_one(tmp_path: Path,
                                                                      after: After) -> None:
    store = tmp_path / "leases"
    store.mkdir(mode=0o700)
    (store / "held.json").write_text(json.dumps(record(cid="someone-else")))
    lease_release.release(str(store), "held", after)
    assert (store / "held.json").exists()


def test_salvage_finds_both_uuid_spellings() -> None:
    legacy = "MIG-GPU-0f2b0000-1111-2222-3333-444455556666/1/0"
    entry = lease_salvage.salvage("x.json", f'["{legacy}", "MIG-ABCD-12"]'.encode(), "bad")
    assert entry.devices == frozenset({legacy.lower(), "mig-abcd-12"})


def test_a_file_name_with_a_newline_is_listed_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "leases"
    store.mkdir(mode=0o700)
    (store / "x\ntime=x forged.json").write_text("{")
    assert main(["leases", "list", "--dir", str(store)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2 and len(err.splitlines()) == 1
    assert lease_store.gc(str(store), Host()).kept[0].count("\n") == 0
