"""``gpu-ctk simulate`` end to end: build, fault changes, and its one-line errors."""

from __future__ import annotations

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
