"""The host's static ldconfig run jailed in the rootfs: it indexes the given directories, the
compat one first, and no image trick (a self-including or FIFO ld.so.conf, /proc includes, a
cache symlinked to a host file) changes anything outside the rootfs or outlives the deadline."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elf_libs import build_shared_library, build_static_probe, cache_entries
from private_mounts import in_child

from gpu_core.errors import ShimError
from spec_hook import ldconfig, rootfs

LIB = "usr/lib/x86_64-linux-gnu"
COMPAT = "usr/local/cuda/compat"
HOST_LDCONFIG = "/sbin/ldconfig"


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shared_library(tmp_path_factory.mktemp("libs") / "libcuda.so.535.104.05",
                                "libcuda.so.1")


@pytest.fixture
def image(tmp_path: Path, libcuda: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "rootfs"
    for sub in ("etc", LIB, "proc", "dev"):
        (path / sub).mkdir(parents=True)
    shutil.copy2(libcuda, path / LIB / libcuda.name)
    fd = rootfs.open_root(str(path))
    yield path, fd
    os.close(fd)


@pytest.fixture
def exe() -> Iterator[int]:
    fd = ldconfig.open_host(HOST_LDCONFIG)
    yield fd
    os.close(fd)


def digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def test_the_cache_names_the_soname_and_the_soname_link_is_made(
        image: tuple[Path, int], exe: int) -> None:
    path, fd = image
    ldconfig.run(exe, fd, ["/" + LIB], soon())
    assert f"/{LIB}/libcuda.so.1" in cache_entries(path / "etc" / "ld.so.cache")
    assert os.readlink(path / LIB / "libcuda.so.1") == "libcuda.so.535.104.05"


def test_the_first_directory_wins_the_library_name(
        image: tuple[Path, int], exe: int, libcuda: Path) -> None:
    path, fd = image
    (path / COMPAT).mkdir(parents=True)
    shutil.copy2(libcuda, path / COMPAT / "libcuda.so.550.54.15")
    ldconfig.run(exe, fd, ["/" + COMPAT, "/" + LIB], soon())
    named = [e for e in cache_entries(path / "etc" / "ld.so.cache") if "libcuda.so.1" in e]
    assert named[0] == f"/{COMPAT}/libcuda.so.1"


def test_a_self_including_ld_so_conf_ends_and_changes_nothing_on_the_host(
        image: tuple[Path, int], exe: int) -> None:
    path, fd = image
    (path / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf\n")
    before = digest("/etc/ld.so.cache")
    try:
        ldconfig.run(exe, fd, ["/" + LIB], soon(5))
    except ShimError as error:  # ldconfig may give up on the loop; either way it ended
        assert error.stage == "ldconfig"
    assert digest("/etc/ld.so.cache") == before


def test_a_fifo_ld_so_conf_is_killed_at_the_deadline(
        image: tuple[Path, int], exe: int) -> None:
    path, fd = image
    os.mkfifo(path / "etc" / "ld.so.conf")
    with pytest.raises(ShimError, match="did not finish before the hook's timeout"):
        ldconfig.run(exe, fd, ["/" + LIB], soon(0.5))


def test_an_include_of_proc_self_reads_nothing_of_the_host(
        image: tuple[Path, int], exe: int) -> None:
    path, fd = image
    (path / "etc" / "ld.so.conf").write_text(
        "include /proc/self/environ\ninclude /proc/self/fd/*\n/proc/self/root/etc\n")
    before = digest("/etc/ld.so.cache")
    ldconfig.run(exe, fd, ["/" + LIB], soon())
    assert digest("/etc/ld.so.cache") == before
    assert all(entry.startswith(f"/{LIB}/")
               for entry in cache_entries(path / "etc" / "ld.so.cache"))


def test_a_cache_symlinked_to_a_host_file_leaves_the_host_file_unchanged(
        image: tuple[Path, int], exe: int, tmp_path: Path) -> None:
    path, fd = image
    host_file = tmp_path / "host-cache"
    host_file.write_bytes(b"the host's bytes\n")
    (path / "etc" / "ld.so.cache").symlink_to(host_file)
    ldconfig.run(exe, fd, ["/" + LIB], soon())
    assert host_file.read_bytes() == b"the host's bytes\n"


def test_ldconfig_runs_jailed_in_its_own_session_with_no_env_and_no_extra_fds(
        image: tuple[Path, int], tmp_path: Path) -> None:
    """A static probe in ldconfig's place: its report lands in the rootfs (the chroot), and a
    host directory fd the caller leaked (inheritable) is not among its fds."""
    path, fd = image
    probe = ldconfig.open_host(str(build_static_probe(tmp_path / "probe")))
    leaked = os.open(str(tmp_path), os.O_PATH)
    os.set_inheritable(leaked, True)
    os.environ["SPEC_HOOK_TEST_LEAK"] = "1"
    try:
        ldconfig.run(probe, fd, ["/" + LIB], soon())
    finally:
        del os.environ["SPEC_HOOK_TEST_LEAK"]
        os.close(leaked)
        os.close(probe)
    report = (path / "probe-report").read_text().splitlines()
    assert report == ["env 0", "session 1", "fds 0 1 2",
                      f"argv ldconfig -C /etc/ld.so.cache -f /etc/ld.so.conf /{LIB}"]


def test_a_dynamic_ldconfig_is_refused() -> None:
    with pytest.raises(ShimError, match=r"dynamic executable \(PT_INTERP\)"):
        ldconfig.open_host("/bin/ls")


def test_a_script_ldconfig_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "ldconfig"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    with pytest.raises(ShimError, match="not an ELF executable"):
        ldconfig.open_host(str(script))


def test_a_non_executable_ldconfig_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "ldconfig"
    shutil.copyfile(HOST_LDCONFIG, copy)
    copy.chmod(0o644)
    with pytest.raises(ShimError, match="not an executable file"):
        ldconfig.open_host(str(copy))


def test_a_relative_ldconfig_path_is_refused() -> None:
    with pytest.raises(ShimError, match="expected an absolute host path"):
        ldconfig.open_host("sbin/ldconfig")


def test_a_failing_ldconfig_is_one_error_with_its_last_line(
        image: tuple[Path, int], exe: int) -> None:
    path, fd = image
    shutil.rmtree(path / "etc")  # nowhere to write the cache
    with pytest.raises(ShimError, match=r"exited with status 1: .*ld\.so\.cache"):
        ldconfig.run(exe, fd, ["/" + LIB], soon())


def test_without_pidfds_the_wait_polls_and_still_reports_the_result(
        image: tuple[Path, int], exe: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before Linux 5.3 there is no pidfd_open: the same run, found by polling."""
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    path, fd = image
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    ldconfig.run(exe, fd, ["/" + LIB], soon())
    assert f"/{LIB}/libcuda.so.1" in cache_entries(path / "etc" / "ld.so.cache")


def test_without_pidfds_a_fifo_ld_so_conf_is_still_killed(
        image: tuple[Path, int], exe: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    path, fd = image
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    os.mkfifo(path / "etc" / "ld.so.conf")
    with pytest.raises(ShimError, match="did not finish before the hook's timeout"):
        ldconfig.run(exe, fd, ["/" + LIB], soon(0.5))


def test_an_at_marked_host_path_is_the_same_ldconfig() -> None:
    """NVIDIA's configuration spells the host's ldconfig ``@/sbin/ldconfig.real``."""
    fd = ldconfig.open_host("@" + HOST_LDCONFIG)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(HOST_LDCONFIG))
    finally:
        os.close(fd)


def test_an_ld_so_conf_through_proc_pid_root_writes_nothing_in_the_host_directory(
        image: tuple[Path, int], exe: int, tmp_path: Path) -> None:
    """With the container's procfs mounted in the rootfs (as runc mounts it before the hook),
    ``/proc/<hook pid>/root`` is the host's root, chroot or not: ldconfig must not scan a host
    directory through it (it would write SONAME links there)."""
    path, fd = image
    host_dir = tmp_path / "host-lib"
    build_shared_library(host_dir / "libevil.so.1.0", "libevil.so.1")

    def body() -> None:
        subprocess.run(["mount", "-t", "proc", "proc", str(path / "proc")], check=True)
        (path / "etc" / "ld.so.conf").write_text(f"/proc/{os.getpid()}/root{host_dir}\n")
        ldconfig.run(exe, fd, ["/" + LIB], soon())
        assert sorted(os.listdir(host_dir)) == ["libevil.so.1.0"]
        assert not any("/proc/" in entry
                       for entry in cache_entries(path / "etc" / "ld.so.cache"))

    in_child(body)


def test_the_container_keeps_its_procfs_after_ldconfig(
        image: tuple[Path, int], exe: int) -> None:
    """The covers are ldconfig's own (a mount namespace of its child): the caller's procfs in
    the rootfs is untouched."""
    path, fd = image

    def body() -> None:
        subprocess.run(["mount", "-t", "proc", "proc", str(path / "proc")], check=True)
        ldconfig.run(exe, fd, ["/" + LIB], soon())
        assert (path / "proc" / "self").is_symlink()

    in_child(body)


MOUNTINFO = """\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 0:5 / /r/rootfs rw - overlay overlay rw
31 30 0:6 / /r/rootfs/proc rw - proc proc rw
32 31 0:7 / /r/rootfs/proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
33 30 0:8 / /r/rootfs/my\\040proc rw - proc proc rw
34 30 0:9 / /r/rootfs/proc/nested rw - proc proc rw
35 22 0:10 / /proc rw - proc proc rw
36 22 0:11 / /r/rootfs-other/proc rw - proc proc rw
37 30 0:12 / /r/rootfs/dev rw - tmpfs tmpfs rw
"""


def test_procfs_mounts_are_those_below_the_root_outermost_only() -> None:
    assert ldconfig.procfs_mounts(MOUNTINFO, "/r/rootfs") == ["/proc", "/my proc"]


def test_a_temporary_cache_symlinked_to_a_host_file_leaves_it_unchanged(
        image: tuple[Path, int], exe: int, tmp_path: Path) -> None:
    """ldconfig writes ``/etc/ld.so.cache~`` then renames it: that name pre-made by the image
    as a link to a host file changes nothing on the host."""
    path, fd = image
    host_file = tmp_path / "host-file"
    host_file.write_bytes(b"the host's bytes\n")
    (path / "etc" / "ld.so.cache~").symlink_to(host_file)
    with contextlib.suppress(ShimError):  # ldconfig may refuse the link; the host is the point
        ldconfig.run(exe, fd, ["/" + LIB], soon())
    assert host_file.read_bytes() == b"the host's bytes\n"


def test_a_folder_symlinked_to_a_host_directory_is_scanned_inside_the_root(
        image: tuple[Path, int], exe: int, tmp_path: Path) -> None:
    path, fd = image
    host_dir = tmp_path / "host-lib"
    build_shared_library(host_dir / "libevil.so.1.0", "libevil.so.1")
    (path / "opt").mkdir()
    (path / "opt" / "lib").symlink_to(host_dir)
    ldconfig.run(exe, fd, ["/opt/lib", "/" + LIB], soon())
    assert sorted(os.listdir(host_dir)) == ["libevil.so.1.0"]
    assert not any("libevil" in entry for entry in cache_entries(path / "etc" / "ld.so.cache"))
