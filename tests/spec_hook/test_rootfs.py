"""Paths resolved inside the rootfs: image symlinks, absolute or relative, never lead out of it,
through openat2 and through the fallback walk alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from spec_hook import rootfs

Opener = Callable[[int, str, int], int]


@pytest.fixture(params=["openat2", "walk"])
def opener(request: pytest.FixtureRequest) -> Opener:
    """Both resolvers: the kernel's (RESOLVE_IN_ROOT) and the user-space walk."""
    if request.param == "walk":
        return rootfs._walk
    return lambda root, path, flags: rootfs.open_in_root(root, path, flags)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    image = tmp_path / "rootfs"
    (image / "etc").mkdir(parents=True)
    (image / "etc" / "hostname").write_text("inside\n")
    fd = rootfs.open_root(str(image))
    yield image, fd
    os.close(fd)


def read(fd: int) -> str:
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)


def test_an_absolute_symlink_to_etc_resolves_to_the_roots_etc(
        root: tuple[Path, int], opener: Opener) -> None:
    image, fd = root
    (image / "escape").symlink_to("/etc")
    assert read(opener(fd, "/escape/hostname", os.O_RDONLY)) == "inside\n"


def test_a_dotdot_symlink_stops_at_the_root(root: tuple[Path, int], opener: Opener) -> None:
    image, fd = root
    (image / "lib").mkdir()
    (image / "lib" / "up").symlink_to("../../../../../../etc")
    assert read(opener(fd, "/lib/up/hostname", os.O_RDONLY)) == "inside\n"


def test_a_dotdot_in_the_path_itself_stops_at_the_root(
        root: tuple[Path, int], opener: Opener) -> None:
    _, fd = root
    assert read(opener(fd, "../../../etc/hostname", os.O_RDONLY)) == "inside\n"


def test_a_final_symlink_to_a_host_file_reads_the_roots_file(
        root: tuple[Path, int], opener: Opener, tmp_path: Path) -> None:
    image, fd = root
    host_file = tmp_path / "host-secret"
    host_file.write_text("host\n")
    (image / "etc" / "secret").symlink_to(host_file)
    with pytest.raises(FileNotFoundError):  # the root has no such path: nothing on the host
        opener(fd, "/etc/secret", os.O_RDONLY)


def test_a_symlink_loop_is_eloop(root: tuple[Path, int], opener: Opener) -> None:
    image, fd = root
    (image / "a").symlink_to("b")
    (image / "b").symlink_to("a")
    with pytest.raises(OSError) as raised:
        opener(fd, "/a/x", os.O_PATH)
    assert raised.value.errno == 40  # ELOOP


def test_a_directory_is_required_when_asked(root: tuple[Path, int], opener: Opener) -> None:
    _, fd = root
    with pytest.raises(NotADirectoryError):
        opener(fd, "/etc/hostname", os.O_PATH | os.O_DIRECTORY)


def test_makedirs_through_a_symlink_to_etc_creates_under_the_roots_etc(
        root: tuple[Path, int]) -> None:
    image, fd = root
    (image / "usr").symlink_to("/etc")
    os.close(rootfs.makedirs_in_root(fd, "/usr/gpu-container-spec-hook-test/x86_64-linux-gnu"))
    assert (image / "etc" / "gpu-container-spec-hook-test" / "x86_64-linux-gnu").is_dir()
    assert not os.path.lexists("/etc/gpu-container-spec-hook-test")


def test_makedirs_through_a_symlink_dangling_in_the_root_creates_nothing_outside(
        root: tuple[Path, int], tmp_path: Path) -> None:
    """The host has the symlink's target, the root does not: an error, the host dir empty."""
    image, fd = root
    outside = tmp_path / "outside"
    outside.mkdir()
    (image / "usr").symlink_to(outside)
    with pytest.raises(FileExistsError):
        rootfs.makedirs_in_root(fd, "/usr/lib/x86_64-linux-gnu")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("path", ["relative", "/", "/a/..", "/a/.", ""])
def test_split_parent_refuses_a_path_naming_no_entry(path: str) -> None:
    with pytest.raises(ValueError):
        rootfs.split_parent(path)


def test_split_parent_of_a_top_level_entry_is_the_root() -> None:
    assert rootfs.split_parent("/lib64") == ("/", "lib64")


def test_a_kernel_without_openat2_falls_back_to_the_walk(
        root: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    def enosys(root: int, path: str, flags: int) -> int:
        raise OSError(38, "Function not implemented", path)

    image, fd = root
    (image / "escape").symlink_to("/etc")
    monkeypatch.setattr(rootfs, "_openat2", enosys)
    monkeypatch.setattr(rootfs, "_have_openat2", None)
    assert read(rootfs.open_in_root(fd, "/escape/hostname", os.O_RDONLY)) == "inside\n"
    assert rootfs._have_openat2 is False


def test_a_nul_in_a_container_path_is_refused(root: tuple[Path, int]) -> None:
    _, fd = root
    with pytest.raises(OSError, match="NUL"):
        rootfs.open_in_root(fd, "/etc/host\x00name", os.O_PATH)
