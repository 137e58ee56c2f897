"""config.json reading and the atomic writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpu_core.bundle import load_spec_file
from gpu_core.errors import ShimError
from runtime_shim import bundle


def write(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / "config.json").write_bytes(data)
    return tmp_path


def test_load_keeps_unknown_fields(tmp_path: Path) -> None:
    """Fields we do not know survive a load."""
    write(tmp_path, b'{"ociVersion":"1.0.2","x-vendor":{"a":[1,2]}}')
    assert bundle.load_spec(str(tmp_path)).spec["x-vendor"] == {"a": [1, 2]}


@pytest.mark.parametrize(("data", "fragment"), [
    (b'{"a":1', "invalid JSON"),
    (b"[]", "expected a JSON object"),
    (b'{"process":{"oomScoreAdj":"5"}}', "process.oomScoreAdj: expected an integer"),
    (b"\xff\xfe", "invalid JSON"),
    (b"[" * 100000 + b"]" * 100000, "config.json"),
])
def test_load_rejects_bad_input_with_one_line(tmp_path: Path, data: bytes, fragment: str) -> None:
    """Malformed config.json is one ShimError naming what is wrong."""
    write(tmp_path, data)
    with pytest.raises(ShimError) as info:
        bundle.load_spec(str(tmp_path))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_load_gives_runcs_reading_of_repeated_and_folded_keys(tmp_path: Path) -> None:
    """A repeated key is no error: the load merges it as runc's decoder does, under the
    field's canonical spelling (gpu_core.oci_spec)."""
    write(tmp_path, b'{"root":{"path":"a"},"Root":{"readonly":true},"x":1,"x":2}')
    assert bundle.load_spec(str(tmp_path)).spec == {"root": {"path": "a", "readonly": True},
                                                   "x": 2}


def test_load_rejects_oversized_file(tmp_path: Path) -> None:
    """A config.json over the size limit is refused before parsing."""
    write(tmp_path, b'{"aaaaaaaaaaaa":1}')
    with pytest.raises(ShimError, match="byte limit"):
        load_spec_file(str(tmp_path), limit=10)


def test_load_refuses_symlinked_config(tmp_path: Path) -> None:
    """config.json that is a symlink is not followed."""
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "config.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(ShimError):
        bundle.load_spec(str(tmp_path))


def test_write_keeps_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """The rewritten file keeps its mode and the directory holds no leftovers."""
    write(tmp_path, b"{}")
    os.chmod(tmp_path / "config.json", 0o600)
    loaded = bundle.load_spec(str(tmp_path))
    bundle.write_spec(loaded, {"ociVersion": "1.2.1", "k": "v"})
    assert json.loads((tmp_path / "config.json").read_text()) == {"ociVersion": "1.2.1", "k": "v"}
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_failed_write_leaves_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error during the write leaves the original bytes and no temp file."""
    write(tmp_path, b'{"orig":true}')
    loaded = bundle.load_spec(str(tmp_path))

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ShimError, match="No space left"):
        bundle.write_spec(loaded, {"new": True})
    assert (tmp_path / "config.json").read_bytes() == b'{"orig":true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
