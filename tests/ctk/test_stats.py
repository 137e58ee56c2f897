"""``gpu-ctk stats``: reading the log (and the rotated one when short), text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctk.main import main

DONE = "time=2026-12-01T10:00:0{0}.000000Z cmd=hook id=c{0} event=done elapsed_ms=5\n"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "shim.log"
    config = tmp_path / "config.yaml"
    config.write_text(f"log: {{file: {path}}}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    return path


def test_json_lists_the_starts_of_the_configured_log(
        log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.write_text(DONE.format(1) + DONE.format(2))
    assert main(["stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in report["recent"]] == ["c1", "c2"]


def test_the_rotated_log_fills_up_to_last_n(log: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    Path(str(log) + ".1").write_text(DONE.format(1) + DONE.format(2))
    log.write_text(DONE.format(3))
    assert main(["stats", "--json", "--last", "2"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)["recent"]] == ["c2", "c3"]


def test_text_report_by_default(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.write_text(DONE.format(1))
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gpu-ctk stats: last 1 GPU starts\n  log: {log}\n")


def test_last_below_one_is_refused(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--last", "0"]) == 1
    assert capsys.readouterr().err == "gpu-ctk: stats: --last must be at least 1, got 0\n"


def test_a_missing_log_is_an_empty_report(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["starts"] == 0
