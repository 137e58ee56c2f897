"""In-root resolution of the simulated libnvidia-container (csrc/nvc_fs.c), in both of its
modes: the kernel's openat2(RESOLVE_IN_ROOT) and the user-space O_PATH walk used without it."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator import nvc_build

CDEF = """
int nvc_open_in_root(int root_fd, const char *path, int flags, unsigned int mode);
int nvc_mkdir_in_root(int root_fd, const char *path, unsigned int mode);
int nvc_mkfile_in_root(int root_fd, const char *path, unsigned int mode);
int nvc_symlink_in_root(int root_fd, const char *dir, const char *name, const char *target);
"""
MODES = {"openat2": (), "walk": ("-DNVC_FORCE_WALK",)}


class Resolver:
    """The resolver functions of one build, called through cffi."""

    def __init__(self, library: Path) -> None:
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(CDEF)
        self.lib: Any = self.ffi.dlopen(str(library))

    def call(self, name: str, *args: Any) -> tuple[int, int]:
        """(result, errno) of one call; a returned fd is closed by the caller."""
        self.ffi.errno = 0
        result = int(getattr(self.lib, name)(*args))
        return result, self.ffi.errno


@pytest.fixture(scope="module", params=sorted(MODES))
def resolver(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Resolver:
    """nvc_fs.c alone as a shared library, in the mode of the parameter."""
    out = tmp_path_factory.mktemp("nvc-fs") / "libnvcfs.so"
    subprocess.run(["gcc", "-std=gnu11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra",
                    "-Werror", *MODES[request.param], str(nvc_build.CSRC / "nvc_fs.c"),
                    "-o", str(out)], check=True, capture_output=True)
    return Resolver(out)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A container root with /etc/marker, and an O_PATH fd of it."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "marker").write_text("inside", encoding="utf-8")
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    yield rootfs, fd
    os.close(fd)


def opened(resolver: Resolver, root_fd: int, path: str) -> tuple[int, int]:
    return resolver.call("nvc_open_in_root", root_fd, path.encode(), os.O_PATH, 0)


def same_file(fd: int, path: Path) -> bool:
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    other = os.stat(path)
    return (info.st_dev, info.st_ino) == (other.st_dev, other.st_ino)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class TestResolve:
    @pytest.mark.parametrize("path", ["/etc/marker", "etc/marker", "../../../etc/marker",
                                      "/etc/../../../etc/./marker"])
    def test_dotdot_stops_at_the_root(self, resolver: Resolver, root: tuple[Path, int],
                                      path: str) -> None:
        """'..' never climbs above the root, absolute paths start at it."""
        rootfs, fd = root
        result, _ = opened(resolver, fd, path)
        assert result >= 0 and same_file(result, rootfs / "etc" / "marker")

    def test_absolute_symlink_is_taken_from_the_root(self, resolver: Resolver,
                                                     root: tuple[Path, int]) -> None:
        """A link to /etc in the image means the image's /etc, not the host's."""
        rootfs, fd = root
        (rootfs / "hostetc").symlink_to("/etc")
        result, _ = opened(resolver, fd, "/hostetc/marker")
        assert result >= 0 and same_file(result, rootfs / "etc" / "marker")

    def test_relative_symlink_cannot_climb_out(self, resolver: Resolver,
                                               root: tuple[Path, int]) -> None:
        """A relative link with more '..' than the depth lands at the root."""
        rootfs, fd = root
        (rootfs / "a" / "b").mkdir(parents=True)
        (rootfs / "a" / "b" / "up").symlink_to("../../../../../../etc")
        result, _ = opened(resolver, fd, "a/b/up/marker")
        assert result >= 0 and same_file(result, rootfs / "etc" / "marker")

    def test_symlink_loop_is_refused(self, resolver: Resolver, root: tuple[Path, int]) -> None:
        """Two links pointing at each other fail with ELOOP."""
        rootfs, fd = root
        (rootfs / "x").symlink_to("y")
        (rootfs / "y").symlink_to("x")
        assert opened(resolver, fd, "x/file") == (-1, errno.ELOOP)

    def test_magic_links_are_refused(self, resolver: Resolver) -> None:
        """A /proc magic link (self/root) never leads out of the root."""
        proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            result, error = opened(resolver, proc, "self/root/etc/hostname")
        finally:
            os.close(proc)
        assert (result, error) == (-1, errno.ELOOP)

    def test_missing_path_is_enoent(self, resolver: Resolver, root: tuple[Path, int]) -> None:
        """A path that does not exist fails with ENOENT."""
        _, fd = root
        assert opened(resolver, fd, "/no/such/file") == (-1, errno.ENOENT)

    def test_file_in_the_middle_is_enotdir(self, resolver: Resolver,
                                           root: tuple[Path, int]) -> None:
        """A regular file used as a directory fails with ENOTDIR."""
        _, fd = root
        assert opened(resolver, fd, "/etc/marker/x") == (-1, errno.ENOTDIR)


class TestCreate:
    def test_mkfile_makes_missing_directories_inside(self, resolver: Resolver,
                                                     root: tuple[Path, int]) -> None:
        """A mount target and its parents are created under the root."""
        rootfs, fd = root
        result, _ = resolver.call("nvc_mkfile_in_root", fd, b"/usr/lib/x/libcuda.so.1", 0o644)
        assert result >= 0 and same_file(result, rootfs / "usr" / "lib" / "x" / "libcuda.so.1")

    def test_mkfile_through_a_symlinked_directory_stays_inside(
            self, resolver: Resolver, root: tuple[Path, int], tmp_path: Path) -> None:
        """An image link to a host directory makes the file under the root's copy of that path."""
        rootfs, fd = root
        outside = tmp_path / "outside"
        outside.mkdir()
        (rootfs / "usr").symlink_to(str(outside))
        result, _ = resolver.call("nvc_mkfile_in_root", fd, b"/usr/lib/libcuda.so", 0o644)
        assert result >= 0
        os.close(result)
        assert list(outside.iterdir()) == []
        assert (rootfs / str(outside).lstrip("/") / "lib" / "libcuda.so").is_file()

    def test_mkfile_does_not_create_through_a_dangling_link(
            self, resolver: Resolver, root: tuple[Path, int], tmp_path: Path) -> None:
        """A dangling link where a target should be is an error, and nothing is created."""
        rootfs, fd = root
        victim = tmp_path / "victim"
        (rootfs / "dev").mkdir()
        (rootfs / "dev" / "nvidiactl").symlink_to(str(victim))
        result, error = resolver.call("nvc_mkfile_in_root", fd, b"/dev/nvidiactl", 0o644)
        assert (result, error) == (-1, errno.ENOENT)
        assert not victim.exists()
        assert not (rootfs / str(victim).lstrip("/")).exists()

    def test_mkdir_returns_the_directory(self, resolver: Resolver,
                                         root: tuple[Path, int]) -> None:
        """mkdir_in_root makes the whole chain and returns an fd of the last directory."""
        rootfs, fd = root
        result, _ = resolver.call("nvc_mkdir_in_root", fd, b"/proc/driver/nvidia", 0o555)
        assert result >= 0 and same_file(result, rootfs / "proc" / "driver" / "nvidia")

    def test_symlink_keeps_an_existing_entry(self, resolver: Resolver,
                                             root: tuple[Path, int]) -> None:
        """An entry the image already has is left as it is."""
        rootfs, fd = root
        result, _ = resolver.call("nvc_symlink_in_root", fd, b"/etc", b"marker", b"elsewhere")
        assert result == 0
        assert (rootfs / "etc" / "marker").read_text(encoding="utf-8") == "inside"

    def test_symlink_is_created_in_the_resolved_directory(self, resolver: Resolver,
                                                          root: tuple[Path, int]) -> None:
        """The libcuda.so link appears next to the libraries."""
        rootfs, fd = root
        result, _ = resolver.call("nvc_symlink_in_root", fd, b"/usr/lib64", b"libcuda.so",
                                  b"libcuda.so.1")
        assert result == 0
        assert os.readlink(rootfs / "usr" / "lib64" / "libcuda.so") == "libcuda.so.1"

    def test_no_descriptor_leaks(self, resolver: Resolver, root: tuple[Path, int]) -> None:
        """Failed and successful calls leave no descriptors behind."""
        rootfs, fd = root
        (rootfs / "loop").symlink_to("loop")
        before = open_fds()
        for _ in range(3):
            made, _ = resolver.call("nvc_mkdir_in_root", fd, b"/a/b/c", 0o755)
            os.close(made)
            resolver.call("nvc_mkfile_in_root", fd, b"/loop/x", 0o644)
            resolver.call("nvc_symlink_in_root", fd, b"/a/b", b"l", b"t")
            opened(resolver, fd, "/loop/x")
            opened(resolver, fd, "/no/such")
        assert open_fds() == before
