"""``gpu-ctk metrics``: the textfile and the state file, leases as gauges, bad state refused."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ctk.main import main
from gpu_core.testing import gpu_uuid, mig_uuid
from leases import lock as lease_lock
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice

P = "gpu_container_shim_"
DEAD_PID = 2 ** 30
DONE = "time=2026-12-01T10:00:0{}.000000Z level=info cmd=hook id=c{} event=done elapsed_ms=5\n"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    found = {"log": tmp_path / "shim.log", "prom": tmp_path / "tf" / "gpu-container-shim.prom",
             "state": tmp_path / "lib" / "state.json", "leases": tmp_path / "leases",
             "config": tmp_path / "config.yaml"}
    found["prom"].parent.mkdir()
    found["config"].write_text(f"log: {{file: {found['log']}}}\n"
                               f"mig: {{lease_dir: {found['leases']}}}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(found["config"]))
    return found


def collect(paths: dict[str, Path], *extra: str) -> int:
    return main(["metrics", "--textfile", str(paths["prom"]), "--state", str(paths["state"]),
                 "--no-discovery", *extra])


def starts_ok(paths: dict[str, Path]) -> str:
    text = paths["prom"].read_text()
    line = f'{P}gpu_starts_total{{component="hook",outcome="ok",stage="none"}} '
    return next((row.split()[-1] for row in text.splitlines() if row.startswith(line)), "0")


def test_textfile_is_written_0644_with_no_temp_file_left(paths: dict[str, Path]) -> None:
    paths["log"].write_text(DONE.format(1, 1))
    assert collect(paths) == 0
    assert os.stat(paths["prom"]).st_mode & 0o777 == 0o644
    assert os.listdir(paths["prom"].parent) == ["gpu-container-shim.prom"]
    assert starts_ok(paths) == "1" and f"{P}config_valid 1\n" in paths["prom"].read_text()


def test_counters_carry_over_and_nothing_is_counted_twice(paths: dict[str, Path]) -> None:
    paths["log"].write_text(DONE.format(1, 1))
    assert collect(paths) == 0
    assert collect(paths) == 0
    with paths["log"].open("a") as stream:
        stream.write(DONE.format(2, 2))
    assert collect(paths) == 0
    assert starts_ok(paths) == "2"


def test_without_textfile_the_exposition_goes_to_stdout(
        paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    paths["log"].write_text(DONE.format(1, 1))
    assert main(["metrics", "--state", str(paths["state"]), "--no-discovery"]) == 0
    assert f"# TYPE {P}gpu_starts_total counter" in capsys.readouterr().out


def test_a_broken_state_file_is_one_line_and_changes_nothing(
        paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    paths["state"].parent.mkdir()
    paths["state"].write_text('{"version": 1, "totals": {"counters": 7}}')
    assert collect(paths) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "state.json: counters: expected a list" in err
    assert not paths["prom"].exists()
    assert paths["state"].read_text() == '{"version": 1, "totals": {"counters": 7}}'


def test_a_missing_textfile_directory_is_one_line(
        paths: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths["log"].write_text(DONE.format(1, 1))
    target = tmp_path / "absent" / "x.prom"
    assert main(["metrics", "--textfile", str(target), "--state", str(paths["state"]),
                 "--no-discovery"]) == 1
    assert capsys.readouterr().err == (f"gpu-ctk: metrics: --textfile {target}: No such file "
                                       "or directory\n")


def test_an_unreadable_log_is_one_line(
        paths: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory where the log should be: one line naming it, no state written."""
    paths["log"].mkdir()
    assert collect(paths) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"gpu-ctk: metrics: log {paths['log']}: ") and err.count("\n") == 1
    assert not paths["state"].exists()


def test_a_new_log_path_is_read_from_its_start_keeping_the_totals(
        paths: dict[str, Path], tmp_path: Path) -> None:
    paths["log"].write_text(DONE.format(1, 1))
    assert collect(paths) == 0
    other = tmp_path / "other.log"
    other.write_text(DONE.format(2, 2))
    assert collect(paths, "--log", str(other)) == 0
    assert starts_ok(paths) == "2"


def test_an_invalid_configuration_is_a_gauge_not_a_failure(
        paths: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The collector still runs (on --log) and says the configuration does not load."""
    paths["config"].write_text("bogus: 1\n")
    paths["log"].write_text(DONE.format(1, 1))
    assert collect(paths, "--log", str(paths["log"])) == 0
    assert f"{P}config_valid 0\n" in paths["prom"].read_text()
    assert "bogus" in capsys.readouterr().err


def lease(directory: Path, cid: str, slot: int, profile: str, pid: int) -> None:
    held = Lease(holder=Holder(container_id=cid, runtime_root="", bundle=f"/b/{cid}",
                               shim_pid=pid),
                 devices=(LeasedDevice(uuid=mig_uuid(0, slot, 0), profile=profile,
                                       gpu=gpu_uuid(0), token=f"mig-{profile}"),),
                 created=time.time())
    with lease_lock.locked(str(directory)):
        lease_write.write_lease(str(directory), held)


def test_leases_are_gauges_by_profile_live_and_stale(paths: dict[str, Path]) -> None:
    paths["log"].write_text("")
    lease(paths["leases"], "live", 1, "1g.10gb", os.getpid())
    lease(paths["leases"], "gone", 2, "1g.10gb", DEAD_PID)
    lease(paths["leases"], "big", 3, "3g.40gb", os.getpid())
    assert collect(paths) == 0
    text = paths["prom"].read_text()
    for profile, state, count in (("1g.10gb", "leased", 1), ("1g.10gb", "stale", 1),
                                  ("3g.40gb", "leased", 1), ("3g.40gb", "stale", 0)):
        assert f'{P}mig_instances{{profile="{profile}",state="{state}"}} {count}\n' in text
