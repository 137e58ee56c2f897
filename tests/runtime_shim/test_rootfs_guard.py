"""runtime_shim.rootfs_guard: an image whose /dev is a symlink is refused before runc runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpu_core.bundle import parse_spec
from gpu_core.errors import ShimError
from runtime_shim.rootfs_guard import check


def spec_for(path: Any) -> dict[str, Any]:
    return {"root": {"path": path}}


def read(text: str) -> dict[str, Any]:
    """config.json text as the shim reads it (runc's reading)."""
    return parse_spec(text.encode())


@pytest.mark.parametrize("target", ["/tmp/host-dev", "../../../../dev", "/proc/self/cwd/dev"])
def test_symlinked_dev_is_refused_naming_its_target(tmp_path: Path, target: str) -> None:
    """/dev -> anything is a ``rootfs`` error that names the link's target."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "dev").symlink_to(target)
    with pytest.raises(ShimError) as caught:
        check(spec_for("rootfs"), str(tmp_path))
    assert caught.value.stage == "rootfs"
    assert caught.value.cause.startswith(f"/dev in the image is a symlink to {target!r};")


@pytest.mark.parametrize("make_dev", [True, False], ids=["directory", "absent"])
def test_a_dev_directory_or_none_passes(tmp_path: Path, make_dev: bool) -> None:
    """A real /dev directory, or none at all (the runtime creates it), is fine."""
    (tmp_path / "rootfs").mkdir()
    if make_dev:
        (tmp_path / "rootfs" / "dev").mkdir()
    check(spec_for("rootfs"), str(tmp_path))


def test_an_absolute_root_path_is_checked(tmp_path: Path) -> None:
    """root.path may be absolute: the bundle directory is then ignored, as runc does."""
    rootfs = tmp_path / "elsewhere"
    rootfs.mkdir()
    (rootfs / "dev").symlink_to("/dev")
    with pytest.raises(ShimError, match=r"^rootfs: /dev in the image is a symlink"):
        check(spec_for(str(rootfs)), "/nonexistent-bundle")


@pytest.mark.parametrize("spec", [{}, {"root": "rootfs"}, spec_for(""), spec_for(3),
                                  spec_for("a\x00b")])
def test_unusable_root_is_left_to_the_runtime(tmp_path: Path, spec: dict[str, Any]) -> None:
    """A config.json without a usable root.path passes: runc reports that itself."""
    check(spec, str(tmp_path))


@pytest.mark.parametrize("text", [
    '{"Root": {"Path": "rootfs"}}',
    '{"root": {"path": "elsewhere"}, "ROOT": {"path": "rootfs"}}',
    '{"root": {"path": "rootfs"}, "ROOT": {"readonly": true}}',
    '{"root": {"path": "rootfs", "path": null}}',
    r'{"ro\u006ft": {"p\u0061th": "rootfs"}}',
    '{"root": {"PATH": "elsewhere/../rootfs"}}',
])
def test_root_keys_are_matched_as_runc_decodes_them(tmp_path: Path, text: str) -> None:
    """runc's Go decoder folds keys, decodes escapes, merges a repeated object, ignores a null
    for a string and cleans the path as text: the guard reads the same root, so no spelling
    hides a symlinked /dev."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "dev").symlink_to("/tmp")
    with pytest.raises(ShimError, match="symlink"):
        check(read(text), str(tmp_path))


def test_the_root_path_is_cleaned_as_text_not_through_a_symlink(tmp_path: Path) -> None:
    """``link/../rootfs`` is ``<bundle>/rootfs`` for runc even when ``link`` points elsewhere,
    so that is the /dev the guard checks."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "dev").symlink_to("/tmp")
    (tmp_path / "far" / "rootfs").mkdir(parents=True)
    (tmp_path / "far" / "x").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "far" / "x")
    with pytest.raises(ShimError, match="symlink"):
        check(read('{"root": {"path": "link/../rootfs"}}'), str(tmp_path))
