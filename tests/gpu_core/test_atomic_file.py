"""gpu_core.atomic_file: the one writer every product file goes through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpu_core import atomic_file


def test_replaces_the_file_whole_with_the_mode_given(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        atomic_file.write(str(target), b"new data", 0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_leaves_no_temporary_behind(tmp_path: Path) -> None:
    atomic_file.write(str(tmp_path / "f"), b"x", 0o600)
    assert os.listdir(tmp_path) == ["f"]


def test_replaces_a_symlink_at_the_target_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "f").symlink_to(victim)
    atomic_file.write(str(tmp_path / "f"), b"new", 0o600)
    assert victim.read_bytes() == b"keep"
    assert not (tmp_path / "f").is_symlink()


def test_exclusive_fails_when_anything_is_there_a_dangling_link_included(tmp_path: Path) -> None:
    (tmp_path / "f").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        atomic_file.write(str(tmp_path / "f"), b"new", 0o600, exclusive=True)
    assert not (tmp_path / "nowhere").exists()
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_named_temporary_is_never_opened_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / ".t.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        atomic_file.write(str(tmp_path / "f"), b"new", 0o600, temp_name=".t.tmp")
    assert victim.read_bytes() == b"keep"
    assert not (tmp_path / "f").exists()


def test_a_failing_fault_hook_before_rename_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def stop() -> None:
        raise OSError(5, "stopped")

    with pytest.raises(OSError):
        atomic_file.write(str(target), b"new", 0o600, before_replace=stop)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_midway_hook_sees_half_the_data_in_the_temporary(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def look() -> None:
        seen.append((tmp_path / ".t.tmp").read_bytes())

    atomic_file.write(str(tmp_path / "f"), b"abcdef", 0o600, temp_name=".t.tmp", midway=look)
    assert seen == [b"abc"]
    assert (tmp_path / "f").read_bytes() == b"abcdef"


def test_owner_is_set_when_it_differs_from_the_callers(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to give a file away")
    atomic_file.write(str(tmp_path / "f"), b"x", 0o600, (1234, 4321))
    info = (tmp_path / "f").stat()
    assert (info.st_uid, info.st_gid) == (1234, 4321)
