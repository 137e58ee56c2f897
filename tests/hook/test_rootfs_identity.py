"""hook.rootfs_identity: the rootfs is the directory mounted in the container's namespace, and a
path that no longer leads there is refused (a private mount namespace stands in for runc's)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_core.errors import ShimError
from hook.rootfs_identity import pin, verify, walk


def prepared(rootfs: Path, bind: bool = True) -> subprocess.Popen[bytes]:
    """A process in a new mount namespace where ``rootfs`` is bind-mounted onto itself, as runc
    leaves its init before pivot_root (or not mounted, with ``bind=False``)."""
    script = (f"mount --bind {rootfs} {rootfs} && " if bind else "") + "exec sleep 30"
    child = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              script])
    for _ in range(500):  # until sh has exec'd sleep inside its namespace
        try:
            if os.readlink(f"/proc/{child.pid}/exe").endswith("sleep"):
                break
        except OSError:
            pass
        time.sleep(0.01)
    return child


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "bundle" / "rootfs"
    (path / "etc").mkdir(parents=True)
    return path


@pytest.fixture
def container(rootfs: Path) -> Iterator[int]:
    child = prepared(rootfs)
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def refusal(rootfs: Path, pid: int) -> str:
    with pytest.raises(ShimError) as caught:
        pin(str(rootfs), pid)
    assert caught.value.stage == "rootfs"
    return caught.value.cause


def test_the_mounted_rootfs_is_pinned(rootfs: Path, container: int) -> None:
    """The path leads to the directory mounted in the namespace: its pinned path is that
    directory, whatever happens to the path afterwards."""
    pinned = pin(str(rootfs), container)
    try:
        os.rename(rootfs, rootfs.with_name("moved"))
        rootfs.symlink_to("/etc")
        assert sorted(os.listdir(pinned.fd_path)) == ["etc"]
    finally:
        pinned.close()


def test_a_rootfs_renamed_and_replaced_by_a_directory_is_refused(rootfs: Path,
                                                                 container: int) -> None:
    os.rename(rootfs, rootfs.with_name("moved"))
    rootfs.mkdir()
    assert "no longer leads to the rootfs runc prepared" in refusal(rootfs, container)


def test_a_symlinked_bundle_is_refused_naming_it(rootfs: Path, container: int) -> None:
    bundle = rootfs.parent
    os.rename(bundle, bundle.with_name("moved"))
    bundle.symlink_to(bundle.with_name("moved"))
    assert f"{bundle} is a symlink" in refusal(rootfs, container)


def test_a_directory_not_mounted_in_the_namespace_is_refused(rootfs: Path) -> None:
    """A parent replaced by a real directory leaves the path leading to a directory that is not
    runc's mount in the container's namespace."""
    child = prepared(rootfs, bind=False)
    try:
        assert "not the directory runc mounted" in refusal(rootfs, child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_mount_over_it_in_the_hosts_namespace_is_refused(rootfs: Path, container: int,
                                                           tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["mount", "--bind", str(other), str(rootfs)], check=True)
    try:
        assert "name different directories" in refusal(rootfs, container)
    finally:
        subprocess.run(["umount", "-l", str(rootfs)], check=False)


def test_a_container_pivoted_into_the_rootfs_is_its_own_root(rootfs: Path) -> None:
    """A runtime that pivoted already: the container's root is the rootfs itself."""
    for name in ("bin", "lib", "lib64", "usr"):
        if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}"):
            (rootfs / name).mkdir()
            subprocess.run(["mount", "--bind", f"/{name}", str(rootfs / name)], check=True)
        elif os.path.islink(f"/{name}"):
            (rootfs / name).symlink_to(os.readlink(f"/{name}"))
    child = subprocess.Popen(["chroot", str(rootfs), "sleep", "30"])
    try:
        for _ in range(500):
            if os.readlink(f"/proc/{child.pid}/root") == str(rootfs):
                break
            time.sleep(0.01)
        pin(str(rootfs), child.pid).close()
    finally:
        child.kill()
        child.wait()
        for name in ("bin", "lib", "lib64", "usr"):
            subprocess.run(["umount", "-l", str(rootfs / name)], capture_output=True, check=False)


@pytest.mark.parametrize("path", ["/a/../b", "/", "/a/./b", "/.."])
def test_an_unclean_path_is_refused(path: str) -> None:
    """Only a cleaned path names one directory (runc cleans root.path as text)."""
    top = os.open("/", os.O_PATH)
    try:
        with pytest.raises(ShimError, match="not a clean absolute path"):
            walk(top, path, path)
    finally:
        os.close(top)


def test_verify_refuses_a_path_swapped_after_pinning(rootfs: Path, container: int) -> None:
    """A swap during the readiness wait is caught before the library runs."""
    pinned = pin(str(rootfs), container)
    try:
        verify(pinned, container)
        os.rename(rootfs, rootfs.with_name("moved"))
        rootfs.symlink_to(rootfs.with_name("moved"))
        with pytest.raises(ShimError, match="is a symlink"):
            verify(pinned, container)
    finally:
        pinned.close()
