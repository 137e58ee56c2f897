"""Locating the low-level runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_core.errors import ShimError
from runtime_shim import lowlevel


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_first_candidate_on_path_wins(tmp_path: Path) -> None:
    """runc is chosen over crun when both are on PATH and runc is listed first."""
    executable(tmp_path / "runc")
    executable(tmp_path / "crun")
    found = lowlevel.find(["runc", "crun"], {"PATH": str(tmp_path)})
    assert found.path == str(tmp_path / "runc")


def test_falls_back_to_later_candidate(tmp_path: Path) -> None:
    """A missing first candidate falls through to the next one."""
    executable(tmp_path / "crun")
    assert lowlevel.find(["runc", "crun"], {"PATH": str(tmp_path)}).path == str(tmp_path / "crun")


def test_absolute_path_candidate(tmp_path: Path) -> None:
    """An absolute candidate is used as is, without PATH."""
    runtime = executable(tmp_path / "my-runc")
    assert lowlevel.find([str(runtime)], {"PATH": ""}).path == str(runtime)


def test_non_executable_is_skipped(tmp_path: Path) -> None:
    """A file without the execute bit is not a runtime."""
    (tmp_path / "runc").write_text("")
    with pytest.raises(ShimError):
        lowlevel.find(["runc"], {"PATH": str(tmp_path)})


def test_none_found_is_a_clear_error(tmp_path: Path) -> None:
    """The error names every candidate and the PATH searched."""
    with pytest.raises(ShimError) as info:
        lowlevel.find(["runc", "crun"], {"PATH": str(tmp_path)})
    assert info.value.stage == "runtime"
    assert "tried runc, crun" in info.value.cause and str(tmp_path) in info.value.cause
