"""The container escapes NVIDIA's toolkit and runc shipped through this path, one named test each
(README §Security and fault hardening), run through shim, hook and simulated libnvidia-container
with real runc on the simulated DGX A100."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from containers import SHIM, sha256
from hostguard import sim_runtime_config

if TYPE_CHECKING:
    from conftest import Sandbox

pytestmark = pytest.mark.e2e

LIBCUDA = "libcuda.so.535.104.05"


def test_cve_2024_0132_links_swapped_during_the_mounts_never_lead_out(
        sandbox: Sandbox) -> None:
    """CVE-2024-0132 (time-of-check/time-of-use on image symlinks): while the hook mounts, the
    image keeps swapping /usr/lib64 and /var/run between real directories and links to the host
    canary; whatever the library sees at each step, nothing lands outside the rootfs."""
    bundle = sandbox.bundle()
    rootfs = bundle.path / "rootfs"
    stop = threading.Event()
    swaps = {"usr/lib64": 0, "var/run": 0}

    def swap(relative: str, target: str) -> None:
        real = rootfs / relative
        spare, link = real.with_name(f".{real.name}.dir"), real.with_name(f".{real.name}.link")
        real.mkdir()  # new in the overlay's upper layer, so it can be renamed
        while not stop.is_set():
            try:
                os.rename(real, spare)
                link.symlink_to(sandbox.canary.path(target))
                os.rename(link, real)
                os.rename(real, link)
                os.rename(spare, real)
                link.unlink()
                swaps[relative] += 1
            except OSError:
                pass  # the library holds or changed an entry: try again

    threads = [threading.Thread(target=swap, args=pair)
               for pair in (("usr/lib64", "usr/lib64"), ("var/run", "run"))]
    for thread in threads:
        thread.start()
    try:
        started = sandbox.start(bundle)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert min(swaps.values()) > 100, swaps
    assert started.outside == []
    assert started.returncode == 0 or "gpu-container-hook: mount error: " in started.stderr, \
        started.stderr


def test_cve_2024_0133_dangling_links_at_mount_targets_create_nothing_on_the_host(
        sandbox: Sandbox) -> None:
    """CVE-2024-0133 (empty files and directories created on the host): links at mount targets
    and their directories that dangle into missing host paths create nothing there; the
    library refuses the dangling file target in one line."""
    bundle = sandbox.bundle()
    rootfs = bundle.path / "rootfs"
    for relative, target in (("usr/bin", "missing/bin"), ("var/run", "missing/run"),
                             ("lib/firmware", "missing/firmware"),
                             ("usr/lib64/" + LIBCUDA, "missing/lib/" + LIBCUDA)):
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.rmtree(path)
        path.symlink_to(sandbox.canary.path(target))
    started = sandbox.start(bundle)
    assert started.outside == []
    assert not (sandbox.canary.root / "missing").exists()
    assert started.returncode != 0
    assert (f"gpu-container-hook: mount error: file creation failed: /usr/lib64/{LIBCUDA}: "
            "No such file or directory") in started.stderr


def test_cve_2024_0134_links_next_to_the_mounts_are_created_inside(sandbox: Sandbox) -> None:
    """CVE-2024-0134 (files created on the host): the compatibility links the library adds next
    to the libraries it mounts (libcuda.so, libGLX_indirect.so.0) and ldconfig's temporary
    cache, each pre-planted as a link to a host file, never write through to it: the libraries
    are mounted inside, and ldconfig refuses the planted temporary file in one line."""
    bundle = sandbox.bundle(env=("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DRIVER_CAPABILITIES=all"))
    rootfs = bundle.path / "rootfs"
    (rootfs / "usr" / "lib64").mkdir()
    for relative, target in (("usr/lib64/libcuda.so", "usr/lib64/libcanary.so"),
                             ("usr/lib64/libGLX_indirect.so.0", "usr/lib64/libcanary.so"),
                             ("usr/lib64/libnvidia-opticalflow.so", "usr/lib64/libcanary.so"),
                             ("etc/ld.so.cache~", "etc/ld.so.cache")):
        (rootfs / relative).symlink_to(sandbox.canary.path(target))
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode != 0
    assert ("gpu-container-hook: ldcache error: process /sbin/ldconfig failed with error code: "
            in started.stderr), started.stderr
    assert (bundle.path / "upper" / "usr" / "lib64" / LIBCUDA).is_file()


PRELOAD_ENV = ("LD_PRELOAD={so}:/lib/evil.so", "LD_AUDIT={so}", "LD_LIBRARY_PATH={lib}",
               "PYTHONPATH={py}:/pytrap", "PYTHONHOME={home}", "PYTHONSTARTUP={startup}",
               "PYTHONINSPECT=1", "GCONV_PATH={lib}", "NVC_DEBUG_FILE={so}")


def test_cve_2025_23266_container_loader_variables_never_reach_the_root_hook(
        sandbox: Sandbox) -> None:
    """CVE-2025-23266 (LD_PRELOAD from the image into a root hook): with every loader and
    Python variable of the container aimed at trap code, the GPU container starts, no trap
    ran, and the injected hook entry carries exactly its own environment."""
    traps = sandbox.traps
    env = tuple(item.format(so=traps.shared_object, lib=traps.library_dir, py=traps.python_dir,
                            home=traps.python_home, startup=traps.startup)
                for item in PRELOAD_ENV)
    bundle = sandbox.bundle(env=("NVIDIA_VISIBLE_DEVICES=0", *env))
    config = sandbox.config()
    started = sandbox.start(bundle, config=config)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    [entry] = bundle.spec()["hooks"]["prestart"]
    assert entry["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            f"GPU_CONTAINER_SHIM_CONFIG={config}"]


def test_cve_2025_23267_ld_cache_links_are_written_inside_the_rootfs(sandbox: Sandbox) -> None:
    """CVE-2025-23267 (the ldcache hook following image symlinks): /etc/ld.so.cache linked to the
    host's real cache, ld.so.conf.d linked to a host directory: the host's cache keeps its
    bytes, and the container gets its own cache listing the driver libraries."""
    host_cache = sha256(Path("/etc/ld.so.cache"))
    bundle = sandbox.bundle()
    rootfs = bundle.path / "rootfs"
    (rootfs / "etc" / "ld.so.cache").symlink_to("/etc/ld.so.cache")
    (rootfs / "etc" / "ld.so.conf.d").symlink_to(sandbox.canary.path("etc/ld.so.conf.d"))
    (rootfs / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    assert sha256(Path("/etc/ld.so.cache")) == host_cache
    cache = bundle.path / "upper" / "etc" / "ld.so.cache"
    assert cache.is_file() and not cache.is_symlink()
    listing = subprocess.run(["ldconfig", "-p", "-C", str(cache)], capture_output=True,
                             text=True, check=True).stdout
    assert "libcuda.so.1 (libc6,x86-64) => /usr/lib64/libcuda.so.1" in listing, listing


def test_cve_2019_5736_the_container_cannot_reach_host_binaries(sandbox: Sandbox) -> None:
    """runc CVE-2019-5736 (a container overwriting a host binary through /proc/<pid>/exe): the
    GPU container sees only its own processes, cannot write any /proc/*/exe it sees, and the
    shim, the hook's interpreter and runc keep their bytes."""
    binaries = [Path(SHIM), Path(os.path.realpath(sys.executable)),
                Path(shutil.which("runc") or "/usr/sbin/runc")]
    before = {path: sha256(path) for path in binaries}
    bundle = sandbox.bundle(args=["/bin/sh", "-c",
                                  "for f in /proc/[0-9]*/exe; do echo x 2>/dev/null >>$f && "
                                  "echo wrote $f; done; ls /proc | grep -c '^[0-9]'"])
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    assert "wrote" not in started.stdout
    assert int(started.stdout.split()[-1]) <= 3, started.stdout  # sh, ls, grep at most
    assert {path: sha256(path) for path in binaries} == before


FD_LISTER = r"""
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char path[64], target[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = '\0';
        printf("%s %s\n", e->d_name, target);
    }
    return 3;
}
"""


def test_cve_2024_21626_no_descriptor_of_the_shim_reaches_the_runtime(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """runc CVE-2024-21626 (a leaked host descriptor used as the container's cwd): the shim
    execs the low-level runtime with stdin, stdout and stderr only, after reading the config,
    the bundle and NVML — nothing it opened is inherited."""
    source = tmp_path / "fds.c"
    source.write_text(FD_LISTER)
    lister = tmp_path / "fd-lister"
    subprocess.run(["gcc", "-o", str(lister), str(source)], check=True)
    bundle = sandbox.bundle()
    config = tmp_path / "lister.yaml"
    config.write_text(sim_runtime_config(sandbox.hosts["dgx-a100"].config_path, [str(lister)],
                                         tmp_path / "shim.log"))
    result = subprocess.run([SHIM, "--root", str(tmp_path / "state"), "create", "--bundle",
                             str(bundle.path), f"fds-{uuid.uuid4().hex[:6]}"],
                            capture_output=True, text=True, check=False, timeout=60,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                 "GPU_CONTAINER_SHIM_CONFIG": str(config)})
    assert result.returncode == 3, result.stderr  # the lister ran: the shim exec'd it
    assert "prestart" in json.dumps(bundle.spec()["hooks"])  # after a real GPU rewrite
    assert sorted(line.split()[0] for line in result.stdout.splitlines()) == ["0", "1", "2"]


def test_cve_2024_21626_the_container_holds_no_host_descriptor(sandbox: Sandbox) -> None:
    """runc CVE-2024-21626, the container's side: after the hook mounted its GPU, the
    container's first process holds stdin, stdout and stderr only."""
    bundle = sandbox.bundle(args=["/bin/sh", "-c", "ls -l /proc/1/fd; true"])
    started = sandbox.start(bundle)
    assert started.outside == []
    assert started.returncode == 0, started.stderr
    names = [line.split(" -> ")[0].split()[-1] for line in started.stdout.splitlines()
             if " -> " in line]
    assert names == ["0", "1", "2"], started.stdout
