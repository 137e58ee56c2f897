"""Image facts read inside the rootfs (gpu_core/image_facts.py): links resolve inside it, never
out of it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpu_core import image_facts


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir()
    return root


def test_a_plain_debian_version_file_is_found(rootfs: Path) -> None:
    (rootfs / "etc").mkdir()
    (rootfs / "etc/debian_version").write_text("12.0\n")
    assert image_facts.has_debian_version(str(rootfs))


def test_an_image_without_one_is_not_debian(rootfs: Path) -> None:
    (rootfs / "etc").mkdir()
    assert not image_facts.has_debian_version(str(rootfs))


def test_a_missing_rootfs_is_not_debian(tmp_path: Path) -> None:
    assert not image_facts.has_debian_version(str(tmp_path / "absent"))


@pytest.mark.parametrize("target", ["/", "../../..", "/../.."])
def test_an_etc_link_aiming_out_resolves_inside_the_rootfs(tmp_path: Path, rootfs: Path,
                                                           target: str) -> None:
    """The host (tmp_path) has etc/debian_version; the image's /etc points at its root, where
    there is none: not Debian, whatever the host holds."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/debian_version").write_text("host\n")
    os.symlink(target, rootfs / "etc")
    assert not image_facts.has_debian_version(str(rootfs))


def test_an_etc_link_inside_the_image_is_followed_there(rootfs: Path) -> None:
    (rootfs / "usr/etc").mkdir(parents=True)
    (rootfs / "usr/etc/debian_version").write_text("12\n")
    os.symlink("/usr/etc", rootfs / "etc")
    assert image_facts.has_debian_version(str(rootfs))


def test_an_absolute_link_at_the_file_resolves_inside_the_rootfs(tmp_path: Path,
                                                                  rootfs: Path) -> None:
    host_file = tmp_path / "host_version"
    host_file.write_text("host\n")
    (rootfs / "etc").mkdir()
    os.symlink(str(host_file), rootfs / "etc/debian_version")
    assert not image_facts.has_debian_version(str(rootfs))


def test_a_link_at_the_file_to_a_file_of_the_image_counts(rootfs: Path) -> None:
    (rootfs / "etc").mkdir()
    (rootfs / "etc/real").write_text("12\n")
    os.symlink("real", rootfs / "etc/debian_version")
    assert image_facts.has_debian_version(str(rootfs))


def test_a_link_loop_is_not_debian(rootfs: Path) -> None:
    os.symlink("etc", rootfs / "etc")
    assert not image_facts.has_debian_version(str(rootfs))


def test_lstat_does_not_follow_the_last_link(rootfs: Path) -> None:
    os.symlink("/nowhere", rootfs / "link")
    info = image_facts.lstat_in_root(str(rootfs), "/link")
    assert info is not None and stat.S_ISLNK(info.st_mode)
