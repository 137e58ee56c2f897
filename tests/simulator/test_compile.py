"""The simulator's compile cache (simulator/compile.py): trusted only when nobody else could
have swapped what is in it, since the root hook loads the libraries built from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from simulator import compile as cc_tools

NOBODY = 65534


def produce_into(calls: list[Path]) -> Callable[[Path], None]:
    def produce(scratch: Path) -> None:
        calls.append(scratch)
        library = scratch / "libx.so"
        library.write_bytes(b"\x7fELF ours")
        library.chmod(0o777)  # what a compiler gives under umask 0
    return produce


def test_an_entry_is_compiled_once(tmp_path: Path) -> None:
    calls: list[Path] = []
    cache, problem = cc_tools.safe_cache(tmp_path / "cache")
    first = cc_tools.cached(cache, "k", produce_into(calls))
    assert cc_tools.cached(cache, "k", produce_into(calls)) == first and len(calls) == 1
    assert problem is None


def test_entries_are_never_writable_by_others(tmp_path: Path) -> None:
    cache, _ = cc_tools.safe_cache(tmp_path / "cache")
    entry = cc_tools.cached(cache, "k", produce_into([]))
    assert all(not p.stat().st_mode & 0o022 for p in (entry, *entry.iterdir()))


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_a_new_cache_is_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        cache, _ = cc_tools.safe_cache(tmp_path / "home" / ".cache" / "sim")
    finally:
        os.umask(old)
    assert cache.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("setup", ["0777", "0775", "foreign", "symlink", "parent-0777"])
def test_a_cache_others_control_is_not_used(tmp_path: Path, setup: str) -> None:
    """A cache directory someone else owns or can write (or a link to one) is left alone:
    the build compiles into a fresh private directory instead, and says why."""
    parent = tmp_path / "loose-parent"
    parent.mkdir()
    given = parent / "cache"
    canary = tmp_path / "canary"
    canary.mkdir()
    if setup == "symlink":
        given.symlink_to(canary)
    elif setup == "parent-0777":
        parent.chmod(0o777)
    else:
        given.mkdir()
        os.chown(given, NOBODY, NOBODY) if setup == "foreign" else given.chmod(int(setup, 8))
    cache, problem = cc_tools.safe_cache(given)
    assert problem is not None and cache != given
    entry = cc_tools.cached(cache, "k", produce_into([]))
    assert (entry / "libx.so").read_bytes() == b"\x7fELF ours"
    assert list(canary.iterdir()) == []
    assert not given.exists() or given.is_symlink() or list(given.iterdir()) == []
    info = cache.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o700)


@pytest.mark.parametrize("tamper", ["foreign file", "loose file", "loose entry"])
def test_an_entry_someone_could_have_swapped_is_compiled_again(tmp_path: Path,
                                                               tamper: str) -> None:
    calls: list[Path] = []
    cache, _ = cc_tools.safe_cache(tmp_path / "cache")
    entry = cc_tools.cached(cache, "k", produce_into(calls))
    library = entry / "libx.so"
    if tamper == "foreign file":
        os.chown(library, NOBODY, NOBODY)
    elif tamper == "loose file":
        library.chmod(0o666)
    else:
        entry.chmod(0o777)
    library.write_bytes(b"\x7fELF theirs")
    again = cc_tools.cached(cache, "k", produce_into(calls))
    assert len(calls) == 2 and (again / "libx.so").read_bytes() == b"\x7fELF ours"


def test_install_never_writes_through_a_link(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_bytes(b"canary")
    target = tmp_path / "lib" / "libx.so"
    target.parent.mkdir()
    target.symlink_to(canary)
    (target.parent / ".libx.so.tmp").symlink_to(canary)
    cc_tools.install(b"new", target)
    assert canary.read_bytes() == b"canary"
    assert not target.is_symlink() and target.read_bytes() == b"new"
