"""``gpu-ctk simulate`` end to end: build, fault changes, and its one-line errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from ctk.main import main


@pytest.fixture
def cache(sim_host_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Builds share the session's compile cache."""
    monkeypatch.setenv("GPU_CTK_SIM_CACHE", str(sim_host_cache))
    return sim_host_cache


def test_builds_and_says_how_to_use_it(cache: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A build prints a summary and the variable that selects the host."""
    into = tmp_path / "sim"
    assert main(["simulate", "--topology", "dgx-a100-mig", "--into", str(into)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["simulated host dgx-a100-mig: 8 GPUs, 9 MIG devices, faults: none",
                   f"export GPU_CONTAINER_SHIM_CONFIG={into}/config.yaml"]
    assert (into / "lib/libnvidia-ml.so.1").is_file()


def test_fault_only_update(cache: Path, tmp_path: Path) -> None:
    """Without --topology, an existing host only gets its faults replaced."""
    into = tmp_path / "sim"
    main(["simulate", "--topology", "t4", "--into", str(into), "--fault", "gpu-lost=0"])
    assert main(["simulate", "--into", str(into), "--fault", "nvc-mount-delay=50"]) == 0
    assert sorted(p.name for p in (into / "faults").iterdir()) == ["nvc-mount-delay"]


@pytest.mark.parametrize(("args", "message"), [
    (["--topology", "t4", "--fault", "gpu-lost=4"],
     "gpu-ctk: simulate: fault 'gpu-lost=4': no GPU 4 (the topology has 1)"),
    (["--topology", "t4", "--fault", "explode"], "gpu-ctk: simulate: fault 'explode': unknown"),
    (["--topology", "nope"], "gpu-ctk: simulate: topology 'nope': no such built-in topology"),
    ([], "gpu-ctk: simulate: "),
])
def test_errors_are_one_line(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             args: list[str], message: str) -> None:
    """Bad faults, topologies, or a missing --topology for a new DIR: one line, exit 1."""
    status = main(["simulate", "--into", str(tmp_path / "sim"), *args])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(message) and err.count("\n") == 1


def test_bad_topology_file(cache: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """A user topology file with a problem is reported with its path and the field."""
    path = tmp_path / "mine.yaml"
    path.write_text("gpus: 3\n")
    assert main(["simulate", "--topology", str(path), "--into", str(tmp_path / "sim")]) == 1
    assert capsys.readouterr().err.startswith(f"gpu-ctk: simulate: topology {path}: ")


@pytest.mark.parametrize("setup", ["foreign", "0777", "0770", "symlink", "parent-0777"])
def test_into_a_directory_others_control_is_refused(cache: Path, tmp_path: Path, setup: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--into a directory someone else owns or can write (or a link, or under a parent others
    can write): one line, exit 1, nothing written there or through it."""
    parent = tmp_path / "parent"
    parent.mkdir()
    into = parent / "sim"
    canary = tmp_path / "canary"
    canary.mkdir()
    if setup == "symlink":
        into.symlink_to(canary)
    elif setup == "parent-0777":
        parent.chmod(0o777)
    else:
        into.mkdir()
        os.chown(into, 65534, 65534) if setup == "foreign" else into.chmod(int(setup, 8))
    assert main(["simulate", "--topology", "t4", "--into", str(into)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpu-ctk: simulate: ") and err.count("\n") == 1
    assert list(canary.iterdir()) == []
    assert into.is_symlink() or not into.exists() or list(into.iterdir()) == []


def test_fault_update_of_a_host_others_can_now_write_is_refused(
        cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    into = tmp_path / "sim"
    assert main(["simulate", "--topology", "t4", "--into", str(into)]) == 0
    into.chmod(0o777)
    assert main(["simulate", "--into", str(into), "--fault", "gpu-lost=0"]) == 1
    assert "writable by group or others" in capsys.readouterr().err
    assert list((into / "faults").iterdir()) == []


def test_links_planted_at_temporary_names_are_not_followed(cache: Path, tmp_path: Path) -> None:
    """A rebuild and a fault change write through no link left at a guessable temporary name
    (DIR/faults is world-writable by design: any user's process counts faults there)."""
    into = tmp_path / "sim"
    assert main(["simulate", "--topology", "t4", "--into", str(into)]) == 0
    canary = tmp_path / "canary"
    canary.write_text("canary\n")
    for name in (".config.yaml.tmp", ".topology.json.tmp", "lib/.libnvidia-ml.so.1.tmp",
                 "faults/.gpu-lost.tmp"):
        (into / name).symlink_to(canary)
    assert main(["simulate", "--topology", "t4", "--into", str(into)]) == 0
    assert main(["simulate", "--into", str(into), "--fault", "gpu-lost=0"]) == 0
    assert canary.read_text() == "canary\n"


def test_compile_cache_others_can_write_is_not_used(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The libraries come from a private directory instead, and the build says why."""
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("GPU_CTK_SIM_CACHE", str(shared))
    into = tmp_path / "sim"
    assert main(["simulate", "--topology", "t4", "--into", str(into)]) == 0
    err = capsys.readouterr().err
    assert "not using the compile cache" in err and "writable by group or others" in err
    assert list(shared.iterdir()) == []
    assert (into / "lib/libnvidia-ml.so.1").is_file()


def test_a_simulator_error_is_reported_as_gpu_ctks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator raises SimulatorError; ``gpu-ctk simulate`` converts it at its edge."""
    from ctk import simulate
    from gpu_core.errors import ShimError
    from simulator.errors import SimulatorError

    def fail(args: argparse.Namespace) -> int:
        raise SimulatorError("simulate", "broken")

    monkeypatch.setattr(simulate, "_run", fail)
    with pytest.raises(ShimError, match=r"^simulate: broken$"):
        simulate.run(argparse.Namespace())
