"""The validated-config cache (gpu_core/config.py): trusted only in a directory of ours, written
with explicit modes, never through a symlink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpu_core import config as config_mod

NOBODY = 65534


def write_config(tmp_path: Path, text: str = "runtimes: [crun]\n") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def load(config: Path, cache: Path) -> config_mod.Config:
    return config_mod.load({config_mod.ENV_VAR: str(config)}, cache_dir=str(cache))


def plant_entry(config: Path, cache: Path, runtimes: list[str]) -> None:
    """An entry claiming ``config``'s exact bytes validated to other runtimes."""
    raw = config_mod.merge(config_mod.DEFAULTS, {"runtimes": runtimes})
    entry = {"format": config_mod.CACHE_FORMAT, "source": str(config),
             "text": config.read_text(), "raw": raw}
    Path(config_mod.cache_file(str(config), str(cache))).write_text(json.dumps(entry))


def test_a_stored_entry_is_a_hit(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cache = tmp_path / "cache"
    load(config, cache)
    assert config_mod.cached(str(config), config.read_bytes(), str(cache)) is not None


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o707, 0o720])
def test_entry_in_a_loose_directory_is_not_trusted(tmp_path: Path, mode: int) -> None:
    """An entry others could have planted (the directory is writable by them) never names the
    runtime: the file is validated again."""
    config = write_config(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(mode)
    plant_entry(config, cache, ["/tmp/evil"])
    assert load(config, cache).runtimes == ("crun",)


def test_entry_in_a_foreign_directory_is_not_trusted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    plant_entry(config, cache, ["/tmp/evil"])
    os.chown(cache, NOBODY, NOBODY)
    assert load(config, cache).runtimes == ("crun",)


def test_entry_owned_by_someone_else_is_not_trusted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    plant_entry(config, cache, ["/tmp/evil"])
    os.chown(config_mod.cache_file(str(config), str(cache)), NOBODY, NOBODY)
    assert load(config, cache).runtimes == ("crun",)


def test_symlinked_entry_is_not_followed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    plant_entry(config, cache, ["/tmp/evil"])
    entry = Path(config_mod.cache_file(str(config), str(cache)))
    elsewhere = tmp_path / "elsewhere.json"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    assert config_mod.cached(str(config), config.read_bytes(), str(cache)) is None


def test_loose_directory_is_moved_aside_and_made_again(tmp_path: Path) -> None:
    """Storing into a directory that is not ours moves it aside, untouched, and makes a 0700
    one; the move is logged."""
    log = tmp_path / "log" / "shim.log"
    config = write_config(tmp_path, f"runtimes: [crun]\nlog: {{file: {log}}}\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    load(config, cache)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("cache.untrusted-")]
    assert len(aside) == 1 and list(aside[0].iterdir()) == []
    assert cache.stat().st_mode & 0o777 == 0o700 and cache.stat().st_uid == os.geteuid()
    assert load(config, cache).runtimes == ("crun",)
    assert "event=untrusted-state" in log.read_text()


def test_symlink_planted_at_the_directory_is_not_written_through(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    canary = tmp_path / "canary"
    canary.mkdir(mode=0o700)
    cache = tmp_path / "cache"
    cache.symlink_to(canary)
    load(config, cache)
    assert list(canary.iterdir()) == []
    assert not cache.is_symlink() and any(cache.iterdir())


def test_directory_under_a_parent_others_can_write_is_not_used(tmp_path: Path) -> None:
    """A parent others can write (not sticky) lets them swap the cache: nothing is stored or
    trusted there."""
    parent = tmp_path / "run"
    parent.mkdir()
    parent.chmod(0o777)
    cache = parent / "cache"
    config = write_config(tmp_path)
    load(config, cache)
    assert not cache.exists()
    cache.mkdir(mode=0o700)
    plant_entry(config, cache, ["/tmp/evil"])
    assert load(config, cache).runtimes == ("crun",)


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o377])
def test_modes_do_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    config = write_config(tmp_path)
    cache = tmp_path / "run" / "config-cache"
    old = os.umask(umask)
    try:
        load(config, cache)
    finally:
        os.umask(old)
    assert cache.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
    assert all(entry.stat().st_mode & 0o777 == 0o600 for entry in cache.iterdir())


def test_entry_that_does_not_build_is_a_miss(tmp_path: Path) -> None:
    """An entry whose document lacks a key this version reads (one an older version wrote) is
    not trusted: the file is validated again, and the new entry replaces it."""
    config = write_config(tmp_path, "runtimes: [crun]\nrequests: {cdi_spec_dirs: [/etc/x]}\n")
    cache = tmp_path / "cache"
    load(config, cache)
    entry = Path(config_mod.cache_file(str(config), str(cache)))
    stored = json.loads(entry.read_text())
    del stored["raw"]["requests"]["cdi_spec_dirs"]
    entry.write_text(json.dumps(stored))
    assert config_mod.cached(str(config), config.read_bytes(), str(cache)) is None
    assert load(config, cache).requests.cdi_spec_dirs == ("/etc/x",)
    assert config_mod.cached(str(config), config.read_bytes(), str(cache)) is not None


def test_a_hit_carries_the_typed_values(tmp_path: Path) -> None:
    config = write_config(tmp_path, "runtimes: [crun]\nretry: {attempts: 9}\n")
    cache = tmp_path / "cache"
    load(config, cache)
    hit = config_mod.cached(str(config), config.read_bytes(), str(cache))
    assert hit is not None and hit.retry.attempts == 9 and hit.source == str(config)
