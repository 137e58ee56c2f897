"""The hook part of a plan: the image's library layout, read without leaving the rootfs."""

from __future__ import annotations

from pathlib import Path

from ctk.hook_plan import has_debian_version


def test_debian_image_is_multiarch(tmp_path: Path) -> None:
    """/etc/debian_version present: True."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "debian_version").write_text("12.0\n")
    assert has_debian_version(str(tmp_path)) is True


def test_image_without_it_is_not(tmp_path: Path) -> None:
    """No /etc/debian_version (or no /etc at all): False."""
    assert has_debian_version(str(tmp_path)) is False
    (tmp_path / "etc").mkdir()
    assert has_debian_version(str(tmp_path)) is False


def test_etc_symlink_out_of_the_rootfs_is_not_followed(tmp_path: Path) -> None:
    """An image whose /etc points at the host's /etc cannot be judged without following it:
    None, even though the host has the file."""
    outside = tmp_path / "host-etc"
    outside.mkdir()
    (outside / "debian_version").write_text("12.0\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "etc").symlink_to(outside)
    assert has_debian_version(str(rootfs)) is None


def test_missing_rootfs_is_unknown(tmp_path: Path) -> None:
    """A rootfs not there yet (mounted later by the engine): None."""
    assert has_debian_version(str(tmp_path / "nope")) is None
