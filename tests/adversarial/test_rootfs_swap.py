"""The rootfs path swapped between runc's preparation and the hook's work, with real runc.

A prestart hook placed before ours in config.json (the shim appends ours) plays the co-tenant:
once runc has bind-mounted the rootfs in the container's mount namespace, it renames the rootfs,
the bundle or a parent and puts a symlink to the host canary, or another real directory, in its
place, or mounts the canary over the rootfs in the host's namespace. The hook must refuse in one
line naming the rootfs (or start the container in the rootfs runc prepared), and nothing outside
that rootfs may change.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
from hostguard import one_line_with

if TYPE_CHECKING:
    from conftest import Sandbox
    from containers import Bundle

pytestmark = pytest.mark.e2e

REFUSED = "gpu-container-hook: rootfs error:"

Swap = Callable[[Path, Path, str], str]
"""(bundle, rootfs, canary) -> the shell commands the co-tenant's hook runs."""


def rootfs_to_symlink(bundle: Path, rootfs: Path, canary: str) -> str:
    return f"mv {rootfs} {rootfs}.runc && ln -s {canary} {rootfs}"


def rootfs_to_directory(bundle: Path, rootfs: Path, canary: str) -> str:
    return f"mv {rootfs} {rootfs}.runc && cp -a {rootfs}.runc {rootfs}"


def rootfs_to_relative_symlink(bundle: Path, rootfs: Path, canary: str) -> str:
    return f"mv {rootfs} {rootfs}.runc && ln -s {'../' * 12}{canary.lstrip('/')} {rootfs}"


def bundle_to_symlink(bundle: Path, rootfs: Path, canary: str) -> str:
    fake = bundle.parent / "fake-bundle"
    return (f"mkdir -p {fake} && cp {bundle}/config.json {fake}/ && ln -s {canary} "
            f"{fake}/{rootfs.name} && mv {bundle} {bundle}.runc && ln -s {fake} {bundle}")


def bundle_to_directory(bundle: Path, rootfs: Path, canary: str) -> str:
    return (f"mv {bundle} {bundle}.runc && mkdir {bundle} && cp {bundle}.runc/config.json "
            f"{bundle}/ && cp -a {bundle}.runc/{rootfs.name} {bundle}/{rootfs.name}")


def parent_to_symlink(bundle: Path, rootfs: Path, canary: str) -> str:
    parent = bundle.parent
    fake = parent.parent / "fake-parent"
    return (f"mkdir -p {fake}/{bundle.name} && cp {bundle}/config.json {fake}/{bundle.name}/ "
            f"&& ln -s {canary} {fake}/{bundle.name}/{rootfs.name} && mv {parent} "
            f"{parent}.runc && ln -s {fake} {parent}")


def parent_to_directory(bundle: Path, rootfs: Path, canary: str) -> str:
    parent = bundle.parent
    return (f"mv {parent} {parent}.runc && mkdir -p {bundle} && cp {parent}.runc/{bundle.name}"
            f"/config.json {bundle}/ && mkdir {bundle}/{rootfs.name}")


def canary_mounted_over(bundle: Path, rootfs: Path, canary: str) -> str:
    return f"mount --bind {canary} {rootfs}"


SWAPS: dict[str, Swap] = {
    "rootfs-symlink": rootfs_to_symlink,
    "rootfs-relative-symlink": rootfs_to_relative_symlink,
    "rootfs-directory": rootfs_to_directory,
    "bundle-symlink": bundle_to_symlink,
    "bundle-directory": bundle_to_directory,
    "parent-symlink": parent_to_symlink,
    "parent-directory": parent_to_directory,
    "bind-mount-over": canary_mounted_over,
}


def swapping_bundle(sandbox: Sandbox, swap: Swap, tmp_path: Path) -> tuple[Bundle, list[Path]]:
    """A GPU bundle under ``tmp_path/parent`` whose rootfs is a plain directory (renaming a
    mount point in its own namespace is refused, so the co-tenant renames real directories),
    with the swapping hook first in its prestart list. Returns it and the paths to clean up."""
    from containers import Bundle as BundleDir

    parent = tmp_path / "parent"
    parent.mkdir()
    made = sandbox.bundle()
    bundle = BundleDir(parent / "bundle")
    shutil.move(str(made.path / "config.json"), str(parent / "bundle-config.json"))
    bundle.path.mkdir()
    shutil.move(str(parent / "bundle-config.json"), str(bundle.config_path))
    rootfs = bundle.path / "rootfs"
    shutil.copytree(sandbox.image, rootfs, symlinks=True)
    script = tmp_path / "co-tenant.sh"
    script.write_text("#!/bin/sh\ncat > /dev/null\n"
                      + swap(bundle.path, rootfs, str(sandbox.canary.root)) + "\n")
    script.chmod(0o755)

    def shape(spec: dict[str, Any]) -> None:
        spec["root"] = {"path": str(rootfs), "readonly": False}
        spec.setdefault("hooks", {})["prestart"] = [{"path": str(script)}]

    bundle.edit(shape)
    return bundle, [rootfs, parent / "bundle.runc" / "rootfs", tmp_path / "parent.runc"]


@pytest.mark.parametrize("name", sorted(SWAPS))
def test_swapped_rootfs_is_refused_in_one_line(sandbox: Sandbox, tmp_path: Path,
                                               name: str) -> None:
    """Whatever replaced the path after runc prepared the rootfs, the hook refuses naming the
    rootfs and nothing outside the rootfs runc prepared changes."""
    bundle, leftovers = swapping_bundle(sandbox, SWAPS[name], tmp_path)
    try:
        started = sandbox.start(bundle)
    finally:
        for path in leftovers:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
    assert started.returncode != 0
    assert "no longer leads to the rootfs runc prepared" in one_line_with(started.stderr,
                                                                          REFUSED)
    assert started.outside == []


def test_unswapped_plain_rootfs_starts(sandbox: Sandbox, tmp_path: Path) -> None:
    """The same bundle with a co-tenant hook that changes nothing starts and gets its driver."""
    bundle, _ = swapping_bundle(sandbox, lambda bundle, rootfs, canary: "true", tmp_path)
    started = sandbox.start(bundle)
    assert (started.returncode, started.outside) == (0, []), started.stderr
    assert list((bundle.path / "rootfs").glob("usr/lib*/**/libcuda.so.*"))


@pytest.mark.parametrize("name", ["rootfs-symlink", "bundle-symlink", "parent-directory"])
def test_a_swap_while_the_library_works_changes_nothing_outside(
        sandbox: Sandbox, tmp_path: Path, name: str) -> None:
    """The co-tenant swaps the path while the library stalls in its mounts (nvc-mount-delay),
    after the hook's checks: the library works through the pinned rootfs, so the start succeeds
    or fails in one line (runc's own pivot_root follows the swapped path) and nothing outside
    the rootfs runc prepared changes."""
    def later(bundle: Path, rootfs: Path, canary: str) -> str:
        swap = SWAPS[name](bundle, rootfs, canary)
        return f"(sleep 1; {swap}) </dev/null >/dev/null 2>&1 &"

    bundle, leftovers = swapping_bundle(sandbox, later, tmp_path)
    host = sandbox.hosts["dgx-a100"]
    host.set_faults("nvc-mount-delay=2500")
    try:
        started = sandbox.start(bundle)
    finally:
        host.set_faults()
        for path in leftovers:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
    # runc itself may then fail in one line: it pivots into whatever the path names by then
    assert started.returncode == 0 or len(started.stderr.strip().splitlines()) == 1, \
        started.stderr
    assert started.outside == []
