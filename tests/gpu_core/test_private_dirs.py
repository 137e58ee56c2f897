"""When a directory we keep state in as root is ours (gpu_core/private_dirs.py), and what ensure()
does with one that is not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_core import private_dirs

NOBODY = 65534


def test_a_fresh_directory_is_made_with_exact_modes(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        assert private_dirs.ensure(str(tmp_path / "a" / "b" / "state")) == []
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b" / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize(("mode", "trusted"), [(0o700, True), (0o755, True), (0o750, True),
                                               (0o770, False), (0o707, False), (0o1777, False)])
def test_own_directory_must_be_writable_by_us_alone(tmp_path: Path, mode: int,
                                                    trusted: bool) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    assert private_dirs.trusted(str(state)) is trusted


@pytest.mark.parametrize(("mode", "owner", "trusted"), [
    (0o1777, 0, True),       # sticky, like /tmp: others cannot rename what is ours
    (0o775, 0, True),        # root's, group-writable, like Ubuntu's /var/log
    (0o777, 0, False),       # anyone could swap our directory
    (0o755, NOBODY, False),  # someone else's
    (0o775, NOBODY, False),
])
def test_ancestors_must_not_let_others_swap_the_directory(tmp_path: Path, mode: int, owner: int,
                                                          trusted: bool) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "state").mkdir(mode=0o700)
    parent.chmod(mode)
    os.chown(parent, owner, owner)
    assert private_dirs.trusted(str(parent / "state")) is trusted


def test_a_root_symlinked_ancestor_is_followed_and_checked(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "state").mkdir(parents=True, mode=0o700)
    (tmp_path / "link").symlink_to(real)
    assert private_dirs.trusted(str(tmp_path / "link" / "state"))
    real.chmod(0o777)
    assert not private_dirs.trusted(str(tmp_path / "link" / "state"))


def test_a_symlinked_ancestor_someone_else_owns_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "state").mkdir(parents=True, mode=0o700)
    (tmp_path / "link").symlink_to(real)
    os.lchown(tmp_path / "link", NOBODY, NOBODY)
    assert not private_dirs.trusted(str(tmp_path / "link" / "state"))


@pytest.mark.parametrize("plant", ["foreign", "loose", "symlink", "file"])
def test_ensure_moves_what_is_not_ours_aside(tmp_path: Path, plant: str) -> None:
    state = tmp_path / "state"
    canary = tmp_path / "canary"
    canary.mkdir()
    if plant == "symlink":
        state.symlink_to(canary)
    elif plant == "file":
        state.write_text("x")
    else:
        state.mkdir()
        os.chown(state, NOBODY, NOBODY) if plant == "foreign" else state.chmod(0o777)
    (note,) = private_dirs.ensure(str(state))
    assert "moved aside to" in note
    assert private_dirs.trusted(str(state)) and list(canary.iterdir()) == []


def test_ensure_never_moves_an_ancestor_that_is_not_ours(tmp_path: Path) -> None:
    parent = tmp_path / "loose-parent"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(private_dirs.UntrustedError, match="writable by others"):
        private_dirs.ensure(str(parent / "state"))
    assert list(parent.iterdir()) == []


def test_ensure_replaces_our_own_root_when_it_is_loose(tmp_path: Path) -> None:
    own = tmp_path / "gpu-container-shim"
    own.mkdir()
    own.chmod(0o777)
    notes = private_dirs.ensure(str(own / "leases"), own_root=str(own))
    assert len(notes) == 1 and own.stat().st_mode & 0o777 == 0o755
    assert private_dirs.trusted(str(own / "leases"))
