"""``--link TARGET::LINK``: made inside the rootfs whatever the image's symlinks say, and never
over an entry the image already has."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spec_hook import links, rootfs

LIB = "/usr/lib/x86_64-linux-gnu"


@pytest.fixture
def image(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "rootfs"
    (path / "etc").mkdir(parents=True)
    (path / LIB.lstrip("/")).mkdir(parents=True)
    fd = rootfs.open_root(str(path))
    yield path, fd
    os.close(fd)


def test_a_link_is_created_with_its_target_text(image: tuple[Path, int]) -> None:
    path, fd = image
    assert links.create(fd, links.parse_link(f"libcuda.so.1::{LIB}/libcuda.so"))
    assert os.readlink(path / LIB.lstrip("/") / "libcuda.so") == "libcuda.so.1"


def test_a_parent_symlinked_to_etc_puts_the_link_in_the_roots_etc(
        image: tuple[Path, int]) -> None:
    path, fd = image
    (path / "usr" / "lib64").symlink_to("/etc")
    assert links.create(fd, links.parse_link("x::/usr/lib64/gpu-spec-hook-test-link"))
    assert os.readlink(path / "etc" / "gpu-spec-hook-test-link") == "x"
    assert not os.path.lexists("/etc/gpu-spec-hook-test-link")


def test_a_parent_symlinked_up_past_the_root_stays_in_the_root(
        image: tuple[Path, int]) -> None:
    path, fd = image
    (path / "usr" / "up").symlink_to("../../../../../../../..")
    assert links.create(fd, links.parse_link("x::/usr/up/gpu-spec-hook-test-link"))
    assert os.readlink(path / "gpu-spec-hook-test-link") == "x"
    assert not os.path.lexists("/gpu-spec-hook-test-link")


def test_an_existing_file_at_the_link_is_left_alone(image: tuple[Path, int]) -> None:
    path, fd = image
    existing = path / LIB.lstrip("/") / "libcuda.so"
    existing.write_text("the image's own\n")
    assert not links.create(fd, links.parse_link(f"libcuda.so.1::{LIB}/libcuda.so"))
    assert existing.read_text() == "the image's own\n"


def test_an_existing_dangling_symlink_at_the_link_is_left_alone(
        image: tuple[Path, int], tmp_path: Path) -> None:
    path, fd = image
    existing = path / LIB.lstrip("/") / "libcuda.so"
    existing.symlink_to(tmp_path / "host-file")
    assert not links.create(fd, links.parse_link(f"libcuda.so.1::{LIB}/libcuda.so"))
    assert os.readlink(existing) == str(tmp_path / "host-file")
    assert not (tmp_path / "host-file").exists()


def test_a_missing_parent_is_created_inside_the_root(image: tuple[Path, int]) -> None:
    path, fd = image
    assert links.create(fd, links.parse_link("libnvidia-ml.so.1::/usr/lib64/new/libnvml.so"))
    assert os.readlink(path / "usr" / "lib64" / "new" / "libnvml.so") == "libnvidia-ml.so.1"


@pytest.mark.parametrize("text", ["no-separator", "::/usr/lib/x", "t::relative/x", "t::/",
                                  "t::/usr/..", "t::", "t\x00::/x", "t::/x\x00"])
def test_a_malformed_link_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        links.parse_link(text)
