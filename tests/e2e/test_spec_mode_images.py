"""Spec mode end to end, what the image holds (README §Spec mode): CUDA forward compatibility
(a compat libcuda of a newer major goes first in the ld cache), and images whose library
directories, /etc or ld.so.conf name a host path, plainly or through /proc/1/root (the runtime's
init, whose root is the host's before pivot_root): nothing outside the rootfs changes, and the
start succeeds or fails in one line. Real runc and crun on the simulated DGX A100."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from containers import Bundle, Runtime, tree_digest
from hostguard import mount_points
from spec_mode import assert_one_line, container_cache, first_path, spec_runtime

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]


COMPAT_SOURCE = "int cuInit(unsigned int flags) { (void)flags; return 0; }\n"


def compat_library(into: Path, version: str, scratch: Path) -> Path:
    """A real shared object named like CUDA's compat libcuda (SONAME libcuda.so.1), built from
    a source in ``scratch``."""
    source = scratch / f"compat-{version}.c"
    source.write_text(COMPAT_SOURCE)
    into.mkdir(parents=True, exist_ok=True)
    library = into / f"libcuda.so.{version}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(library),
                    str(source)], check=True)
    return library


@pytest.mark.parametrize(("compat", "debian", "first"), [
    ("550.54.15", False, "/usr/local/cuda/compat/libcuda.so.1"),
    ("550.54.15", True, "/usr/local/cuda/compat/libcuda.so.1"),
    ("999.1", False, "/usr/local/cuda/compat/libcuda.so.1"),
    ("535.999.01", False, "/usr/lib64/libcuda.so.1"),
    ("470.82.01", False, "/usr/lib64/libcuda.so.1"),
    ("470.82.01", True, "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
], ids=["newer-major", "newer-major-debian", "much-newer-major", "same-major", "older-major",
        "older-major-debian"])
def test_compat_libcuda_goes_first_only_when_its_major_is_newer(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path, compat: str, debian: bool,
        first: str) -> None:
    """An image (lib64 or Debian layout) with /usr/local/cuda/compat/libcuda.so.<compat> on a
    535 driver: the ld cache resolves libcuda.so.1 to the compat library when its major is
    newer than the driver's, to the driver's library otherwise."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=0"])
    if debian:
        (bundle.path / "rootfs" / "etc" / "debian_version").write_text("12.0\n")
    compat_dir = bundle.path / "rootfs" / "usr" / "local" / "cuda" / "compat"
    compat_library(compat_dir, compat, tmp_path)
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert first_path(container_cache(bundle), "libcuda.so.1") == first


def test_compat_library_that_is_a_symlink_is_not_used(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path) -> None:
    """A compat ``libcuda.so.550.54.15`` that is only a symlink (to a real newer library
    elsewhere in the image) is not a compat library: libcuda.so.1 stays the driver's."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=0"])
    rootfs = bundle.path / "rootfs"
    compat_library(rootfs / "opt" / "elsewhere", "550.54.15", tmp_path)
    compat_dir = rootfs / "usr" / "local" / "cuda" / "compat"
    compat_dir.mkdir(parents=True)
    (compat_dir / "libcuda.so.550.54.15").symlink_to("/opt/elsewhere/libcuda.so.550.54.15")
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert first_path(container_cache(bundle), "libcuda.so.1") == "/usr/lib64/libcuda.so.1"


# -- images pointing at the host --------------------------------------------------------------


VIA = {"direct": "", "proc-1-root": "/proc/1/root"}
"""How an image's link names a host path: plainly, or through /proc/1/root, which in the
container's PID namespace before pivot_root is the runtime's init, whose root is the host's."""


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("relative", ["usr/lib/x86_64-linux-gnu", "etc", "usr/local/cuda/compat",
                                      "usr/lib64"])
def test_image_directory_linked_to_a_host_path_writes_nothing_outside(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path, relative: str, via: str,
        low_level: str) -> None:
    """A Debian image whose ``relative`` is a symlink to a host directory (holding files an
    ldconfig or a mount would replace), named plainly or through /proc/1/root (runc and crun):
    the start succeeds or fails with one line, and the host directory is unchanged with nothing
    mounted on it."""
    host = sim_host_factory("dgx-a100")
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (outside / "ld.so.cache").write_bytes(b"host ld.so.cache\n")
    (outside / "ld.so.conf").write_text("/host/lib\n")
    (outside / "debian_version").write_text("12.0\n")
    compat_library(outside, "550.54.15", tmp_path)
    before = tree_digest(outside)
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=0"])
    rootfs = bundle.path / "rootfs"
    (rootfs / "etc" / "debian_version").write_text("12.0\n")
    target = rootfs / relative
    if target.is_dir():
        subprocess.run(["rm", "-rf", "--one-file-system", str(target)], check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(VIA[via] + str(outside))
    result = spec_runtime(host, make_runtime, write_config, low_level).run(bundle)
    assert tree_digest(outside) == before
    assert not [p for p in mount_points() if p == str(outside) or p.startswith(f"{outside}/")]
    if result.returncode != 0:
        assert_one_line(result.stderr)


@pytest.mark.parametrize("via", VIA)
def test_ld_so_conf_naming_a_host_directory_gets_no_links_there(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path, via: str, low_level: str) -> None:
    """An image whose /etc/ld.so.conf lists a host directory holding a library without its
    SONAME link (ldconfig adds such links in every directory it scans), plainly or through
    /proc/1/root (runc and crun): the host directory is unchanged."""
    host = sim_host_factory("dgx-a100")
    outside = tmp_path / "host-libs"
    compat_library(outside, "1.0", tmp_path).rename(outside / "libprobe.so.1.0")
    before = tree_digest(outside)
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=0"])
    (bundle.path / "rootfs" / "etc" / "ld.so.conf").write_text(f"{VIA[via]}{outside}\n")
    result = spec_runtime(host, make_runtime, write_config, low_level).run(bundle)
    assert tree_digest(outside) == before
    if result.returncode != 0:
        assert_one_line(result.stderr)
