"""``gpu-ctk leases list|gc``: the table, the JSON rows, reported leftovers and reclaiming."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ctk import leases as ctk_leases
from ctk.main import main
from gpu_core.testing import gpu_uuid, mig_uuid
from leases import lock as lease_lock
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice

DEAD_PID = 2 ** 30
"""Above any pid_max: a holder that certainly does not run."""


def hold(directory: Path, cid: str, slots: tuple[int, ...], pid: int, age: float = 0.0) -> None:
    lease = Lease(holder=Holder(container_id=cid, runtime_root="", bundle=f"/b/{cid}",
                                shim_pid=pid),
                  devices=tuple(LeasedDevice(uuid=mig_uuid(0, s + 1, 0), profile="1g.10gb",
                                             gpu=gpu_uuid(0), token="mig-1g.10gb")
                                for s in slots),
                  created=time.time() - age)
    with lease_lock.locked(str(directory)):
        lease_write.write_lease(str(directory), lease)


def test_list_shows_holder_device_profile_age_and_status(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One table row per leased device, oldest lease first; dead holders show `stale`."""
    hold(tmp_path, "young", (2,), os.getpid(), age=5)
    hold(tmp_path, "old", (0, 1), DEAD_PID, age=7200)
    assert main(["leases", "list", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["HOLDER", "DEVICE", "PROFILE", "AGE", "STATUS"]
    assert [line.split() for line in lines[1:]] == [
        ["old", mig_uuid(0, 1, 0), "1g.10gb", "2h", "stale"],
        ["old", mig_uuid(0, 2, 0), "1g.10gb", "2h", "stale"],
        ["young", mig_uuid(0, 3, 0), "1g.10gb", "5s", "live"],
    ]


def test_list_json_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives one object per device with the stale reason and the request token."""
    hold(tmp_path, "gone", (0,), DEAD_PID)
    assert main(["leases", "list", "--json", "--dir", str(tmp_path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["holder"], row["device"], row["status"], row["request"], row["bundle"]) == (
        "gone", mig_uuid(0, 1, 0), "stale", "mig-1g.10gb", "/b/gone")
    assert row["stale_reason"].endswith(f"start pid {DEAD_PID} gone")


def test_empty_store_says_there_are_none(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """No leases (or no directory yet): one line saying so, `[]` in JSON."""
    assert main(["leases", "list", "--dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr() == (f"no MIG leases in {tmp_path / 'none'}\n", "")
    assert main(["leases", "list", "--json", "--dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_gc_with_nothing_to_reclaim_says_so(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """gc that finds only live leases (or none) says there was nothing to reclaim."""
    hold(tmp_path, "live", (0,), os.getpid())
    assert main(["leases", "gc", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr() == (f"nothing to reclaim in {tmp_path}\n", "")
    assert sorted(os.listdir(tmp_path)) == [".lock", "live.json"]


def test_list_reports_leftovers_on_stderr(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A killed writer's temp file and an unreadable lease are reported, one line each."""
    (tmp_path / ".c1.999999999.tmp").write_text('{"fo')
    (tmp_path / "c2.json").write_text("")
    assert main(["leases", "list", "--dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("gpu-ctk: leases: incomplete write .c1.999999999.tmp (writer pid "
                      "999999999 gone)")
    assert err[1] == "gpu-ctk: leases: unreadable lease c2.json: empty"


def test_gc_reclaims_stale_and_says_what(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """gc removes the dead holder's lease and the leftover, keeps the live one, one line each."""
    hold(tmp_path, "live", (0,), os.getpid())
    hold(tmp_path, "dead", (1,), DEAD_PID)
    (tmp_path / ".x.999999999.tmp").write_text("{")
    assert main(["leases", "gc", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"reclaimed dead: {mig_uuid(0, 2, 0)} (1g.10gb): container unknown to the "
                   f"runtime (no runtime root recorded), start pid {DEAD_PID} gone",
                   "removed .x.999999999.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".lock", "live.json"]


def test_gc_keeps_an_unreadable_lease_and_says_why(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable lease may belong to a live container: gc keeps it, one line on stderr, and
    says on stdout that nothing was reclaimed."""
    (tmp_path / "c2.json").write_text("{")
    assert main(["leases", "gc", "--dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"nothing to reclaim in {tmp_path}\n"
    (line,) = captured.err.splitlines()
    assert line.startswith("gpu-ctk: leases: kept unreadable lease c2.json (not JSON: ")
    assert line.endswith("remove it by hand once container c2 is gone")
    assert (tmp_path / "c2.json").exists()


def test_list_shows_an_unreadable_lease_in_the_table(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    hold(tmp_path, "c1", (0,), os.getpid())
    (tmp_path / "c2.json").write_text("[]")
    assert main(["leases", "list", "--dir", str(tmp_path)]) == 0
    rows = [line.split(None, 4) for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows[1] == ["c2", "*", "-", "-", "unreadable (c2.json: <root>: expected an object)"]


def test_directory_defaults_to_the_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without --dir the store is mig.lease_dir of the configuration in force."""
    config = tmp_path / "config.yaml"
    config.write_text(f"mig: {{lease_dir: {tmp_path / 'store'}}}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    hold(tmp_path / "store", "c1", (0,), os.getpid())
    assert main(["leases", "list", "--json"]) == 0
    assert [r["holder"] for r in json.loads(capsys.readouterr().out)] == ["c1"]


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0s"), (59.9, "59s"), (60, "1m"),
                                                (3599, "59m"), (3600, "1h"), (86400 * 3, "3d"),
                                                (-5, "0s")])
def test_age_uses_the_largest_whole_unit(seconds: float, shown: str) -> None:
    """Ages read like `docker ps`: one unit, rounded down."""
    assert ctk_leases.age(seconds) == shown
