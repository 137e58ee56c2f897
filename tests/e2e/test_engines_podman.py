"""podman on the simulated DGX A100 with the hooks.d file ``gpu-ctk runtime configure
--runtime podman`` writes: stock runc, no shim, and the standalone hook gives the container
/dev/nvidia0 and the device cgroup access to it.

podman runs with private storage (vfs), run and tmp directories, no network, and the options
this machine needs (runc, cgroupfs, file events, rlimits within the hard limits).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from engines import ENXIO, EPERM, SYSTEM_PATH, copy_rootfs, gpu_ctk, installed_hook, sweep

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

SimHostFactory = Callable[..., "SimHost"]
Podman = Callable[..., "subprocess.CompletedProcess[str]"]
RUN = ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def hooks_dir(tmp_path_factory: pytest.TempPathFactory,
              sim_host_factory: SimHostFactory) -> Path:
    host = sim_host_factory("dgx-a100")
    hooks = tmp_path_factory.mktemp("hooks.d")
    gpu_ctk("runtime", "configure", "--runtime", "podman", "--config",
            str(hooks / "oci-gpu-container-hook.json"), "--hook-path", installed_hook(),
            "--shim-config", str(host.config_path))
    return hooks


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, hooks_dir: Path) -> Iterator[Podman]:
    root = tmp_path_factory.mktemp("podman")
    base = ["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
            "--tmpdir", str(root / "tmp"), "--network-config-dir", str(root / "net"),
            "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--hooks-dir", str(hooks_dir)]

    def podman(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=60,
                              check=False, env={"PATH": SYSTEM_PATH})

    try:
        yield podman
    finally:
        podman("rm", "--all", "--force")
        sweep(root)


def test_hooks_file_runs_the_standalone_hook(hooks_dir: Path) -> None:
    """The hooks.d file runs our standalone hook at prestart for every container, with the
    simulated host's config in its environment."""
    [written] = hooks_dir.glob("*.json")
    document = json.loads(written.read_text())
    assert document["hook"]["path"] == installed_hook()
    assert document["stages"] == ["prestart"] and document["when"] == {"always": True}
    assert any(item.startswith("GPU_CONTAINER_SHIM_CONFIG=") for item in document["hook"]["env"])


def test_gpu_zero_through_the_hooks_file(podman: Podman, busybox_image: Path,
                                         tmp_path: Path) -> None:
    """``podman run -e NVIDIA_VISIBLE_DEVICES=0`` with stock runc: /dev/nvidia0 is inside and
    opening it gives ENXIO (device cgroup allows it), not EPERM."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    result = podman(*RUN, "-e", "NVIDIA_VISIBLE_DEVICES=0", "--rootfs", str(rootfs),
                    "/bin/sh", "-c", "ls -l /dev/nvidia0; head -c1 /dev/nvidia0")
    assert "195,   0" in result.stdout, result.stdout + result.stderr
    assert ENXIO in result.stderr and EPERM not in result.stderr, result.stderr


def test_container_without_gpu_request_is_left_alone(podman: Podman, busybox_image: Path,
                                                     tmp_path: Path) -> None:
    """A container without NVIDIA_VISIBLE_DEVICES runs as usual and gets no GPU node."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    result = podman(*RUN, "--rootfs", str(rootfs), "/bin/sh", "-c",
                    "ls /dev; echo done")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("done") and "nvidia" not in result.stdout
