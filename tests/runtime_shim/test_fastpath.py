"""The fast-path entry the shell launcher reads: what is written, when, and when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_core import config as config_mod
from runtime_shim import fastpath


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "state", tmp_path / "cache"


def load_and_remember(config: Path, dirs: tuple[Path, Path]) -> bool:
    state, cache = dirs
    environ = {config_mod.ENV_VAR: str(config)}
    loaded = config_mod.load(environ, cache_dir=str(cache))
    return fastpath.remember(loaded, environ, state_dir=str(state), cache_dir=str(cache))


def test_entry_binds_the_validated_bytes_to_their_runtimes(tmp_path: Path,
                                                           dirs: tuple[Path, Path]) -> None:
    """The named slot names a copy holding the exact file bytes and lists their runtimes."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [crun, /opt/runc]\n")
    assert load_and_remember(config, dirs)
    lines = (dirs[0] / "named").read_text().split("\n")
    assert lines[0] == fastpath.MAGIC and lines[1] == str(config)
    assert lines[3:] == ["lease-dir " + config_mod.DEFAULTS["mig"]["lease_dir"],
                         "create-fast yes", "log " + config_mod.DEFAULTS["log"]["file"], "crun",
                         "/opt/runc", "end", ""]
    assert (dirs[0] / lines[2].split(" ", 1)[1]).read_bytes() == config.read_bytes()


def test_current_entry_is_not_rewritten(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """A second call with the same configuration writes nothing."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    assert not load_and_remember(config, dirs)


def test_unvalidated_bytes_are_never_remembered(tmp_path: Path,
                                                dirs: tuple[Path, Path]) -> None:
    """Bytes that changed after validation (no cache entry for them) give no entry."""
    state, cache = dirs
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    environ = {config_mod.ENV_VAR: str(config)}
    loaded = config_mod.load(environ, cache_dir=str(cache))
    config.write_text("runtimes: [crun]\n")
    assert not fastpath.remember(loaded, environ, state_dir=str(state), cache_dir=str(cache))
    assert not (state / "named").exists()


def test_changed_config_replaces_entry_and_old_copy(tmp_path: Path,
                                                    dirs: tuple[Path, Path]) -> None:
    """A new configuration gets a new copy; the copy nothing refers to is removed."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    load_and_remember(config, dirs)
    config.write_text("runtimes: [crun]\n")
    assert load_and_remember(config, dirs)
    copies = list(dirs[0].glob("copy-*"))
    assert [c.read_text() for c in copies] == ["runtimes: [crun]\n"]


def test_absent_default_config_is_recorded_as_absent(tmp_path: Path) -> None:
    """No file at the default path: the default slot says absent, with the default runtimes."""
    state = tmp_path / "state"
    assert not os.path.lexists(config_mod.DEFAULT_PATH)
    assert fastpath.remember(config_mod.defaults(), {}, state_dir=str(state),
                             cache_dir=str(tmp_path / "cache"))
    lines = (state / "default").read_text().split("\n")
    assert lines[1:3] == [config_mod.DEFAULT_PATH, fastpath.ABSENT]
    assert lines[6:-2] == list(config_mod.DEFAULTS["runtimes"])


@pytest.mark.parametrize(("lease_dir", "runtimes"), [("/l", ["run\nc"]), ("/l", ["end"]),
                                                     ("/l", ["a\rb"]), ("/l\n", ["runc"])])
def test_values_that_are_not_one_line_get_no_entry(lease_dir: str, runtimes: list[str]) -> None:
    """A value the launcher could not read back line by line is never written."""
    assert fastpath.entry_text("/c.yaml", "copy copy-x", lease_dir, runtimes) is None


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_state_directory_others_can_write_is_moved_aside(tmp_path: Path, dirs: tuple[Path, Path],
                                                          mode: int) -> None:
    """A group- or world-writable state directory is never trusted with an entry: it is moved
    aside untouched and a fresh owner-only one holds the entry."""
    state = dirs[0]
    state.mkdir()
    state.chmod(mode)
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("state.untrusted-")]
    assert len(aside) == 1 and list(aside[0].iterdir()) == []
    assert (state / "named").is_file() and state.stat().st_mode & 0o777 == 0o700


def test_foreign_state_directory_is_moved_aside(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """A state directory someone else made first is not ours, whatever its mode."""
    state = dirs[0]
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    assert state.stat().st_uid == os.geteuid()
    aside = next(p for p in tmp_path.iterdir() if p.name.startswith("state.untrusted-"))
    assert aside.stat().st_uid == 65534 and list(aside.iterdir()) == []


def test_symlinked_state_directory_is_never_written_through(tmp_path: Path,
                                                            dirs: tuple[Path, Path]) -> None:
    """A symlink planted at the state directory is replaced, its target left as it was."""
    canary = tmp_path / "canary"
    canary.mkdir(mode=0o700)
    dirs[0].symlink_to(canary)
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    assert list(canary.iterdir()) == []
    assert not dirs[0].is_symlink() and (dirs[0] / "named").is_file()


def test_loose_state_directory_is_fixed_even_when_the_entry_is_current(
        tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """An entry that is current but sits in a directory loosened since is written again."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    dirs[0].chmod(0o777)
    assert load_and_remember(config, dirs)
    assert dirs[0].stat().st_mode & 0o777 == 0o700


def test_state_directory_and_its_parent_are_sealed(tmp_path: Path,
                                                   dirs: tuple[Path, Path]) -> None:
    """Both get the sticky bit the launcher checks without starting a process."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    assert dirs[0].stat().st_mode & 0o7777 == 0o1700
    assert tmp_path.stat().st_mode & 0o1000


def test_unsealed_state_directory_is_sealed_again(tmp_path: Path,
                                                  dirs: tuple[Path, Path]) -> None:
    """A directory whose mode was set since (any numeric chmod clears the bit) is checked and
    sealed again, even when its entry is current."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert load_and_remember(config, dirs)
    dirs[0].chmod(0o700)
    assert load_and_remember(config, dirs)
    assert dirs[0].stat().st_mode & 0o7777 == 0o1700


def test_parent_others_can_write_is_not_sealed(tmp_path: Path) -> None:
    parent = tmp_path / "loose-parent"
    parent.mkdir()
    parent.chmod(0o1777)
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    load_and_remember(config, (parent / "state", tmp_path / "cache"))
    assert parent.stat().st_mode & 0o7777 == 0o1777


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o277])
def test_state_directory_mode_does_not_depend_on_the_umask(tmp_path: Path,
                                                           dirs: tuple[Path, Path],
                                                           umask: int) -> None:
    """Whatever the umask, the state directory is 0700 and its parents 0755."""
    state = tmp_path / "run" / "shim" / "fastpath"
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    old = os.umask(umask)
    try:
        assert load_and_remember(config, (state, dirs[1]))
    finally:
        os.umask(old)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "run" / "shim").stat().st_mode & 0o777 == 0o755
    assert all(entry.stat().st_mode & 0o777 == 0o600 for entry in state.iterdir())


def test_state_directory_is_created_owner_only(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """The directory the launcher trusts is created with mode 0700."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    load_and_remember(config, dirs)
    assert dirs[0].stat().st_mode & 0o777 == 0o700


def test_unwritable_state_directory_is_harmless(tmp_path: Path,
                                                dirs: tuple[Path, Path]) -> None:
    """Failing to write (here: a parent of the state path is a file) costs only the fast path."""
    (tmp_path / "file").write_text("")
    dirs = (tmp_path / "file" / "state", dirs[1])
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert not load_and_remember(config, dirs)


@pytest.mark.parametrize(("text", "fast"), [
    ("", True), ("cgroup: {parent: ai.slice}", False),
    ("requests: {swarm_resource: DOCKER_RESOURCE_GPU}", False),
    ("requests: {swarm_resource: ''}", True),
])
def test_create_fast_only_when_triggers_cover_every_request(text: str, fast: bool) -> None:
    """Swarm variables are the operator's names: no fixed trigger covers them, so a configured
    swarm_resource sends every create through the pipeline."""
    config = config_mod.parse(text, "test") if text else config_mod.defaults()
    assert fastpath.create_fast(config) is fast
