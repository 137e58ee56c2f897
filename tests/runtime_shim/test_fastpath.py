"""The fast-path entry the shell launcher reads: what is written, when, and when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hook import config as config_mod
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


def test_state_directory_others_can_write_is_refused(tmp_path: Path,
                                                     dirs: tuple[Path, Path]) -> None:
    """A group- or world-writable state directory is never trusted with an entry."""
    state = dirs[0]
    state.mkdir()
    state.chmod(0o777)
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    assert not load_and_remember(config, dirs)
    assert not (state / "named").exists()


def test_state_directory_is_created_owner_only(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """The directory the launcher trusts is created with mode 0700."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [runc]\n")
    load_and_remember(config, dirs)
    assert dirs[0].stat().st_mode & 0o777 == 0o700


def test_unwritable_state_directory_is_harmless(tmp_path: Path,
                                                dirs: tuple[Path, Path]) -> None:
    """Failing to write (here: the state path is a file) costs only the fast path."""
    dirs[0].write_text("")
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
