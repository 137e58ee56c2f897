"""podman injecting ``nvidia.com/gpu=0`` from the CDI spec ``gpu-ctk cdi generate`` wrote for
the simulated DGX A100, with our shim as its runtime: the container keeps exactly the engine's
device (no /dev/nvidia1..7 added for ``NVIDIA_VISIBLE_DEVICES=all``, no hook of ours), and its
workload policy still applies (README §Beside CDI and DRA) — with the shim in hook mode and in
spec mode, where a plain ``NVIDIA_VISIBLE_DEVICES=2`` container also gets its GPU, the driver
and an ld cache (README §Spec mode).

podman 4.3 reads CDI specs only from /etc/cdi and /var/run/cdi, so every podman call runs in a
private mount namespace whose /etc is an overlay: the spec is written to that overlay's upper
directory, and the machine's own /etc never changes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from engines import ENXIO, EPERM, GPU_CTK, SHIM, SYSTEM_PATH, copy_rootfs, sweep
from spec_mode import PROBE, assert_sees_one_gpu
from spec_mode import write_config as write_spec_config

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

SimHostFactory = Callable[..., "SimHost"]
Podman = Callable[..., "subprocess.CompletedProcess[str]"]
RUN = ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def host(sim_host_factory: SimHostFactory) -> SimHost:
    return sim_host_factory("dgx-a100")


def generate_spec(config: Path) -> str:
    """``gpu-ctk cdi generate --format json`` under shim configuration ``config``."""
    env = {"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    return subprocess.run([GPU_CTK, "cdi", "generate", "--format", "json"], capture_output=True,
                          text=True, timeout=60, check=True, env=env).stdout


def start_podman(root: Path, config: Path) -> Iterator[Podman]:
    """podman on private directories under ``root``, with our shim (configuration ``config``)
    as its runtime and the CDI spec generated under that configuration in its /etc/cdi."""
    upper, work = root / "etc-upper", root / "etc-work"
    (upper / "cdi").mkdir(parents=True)
    work.mkdir()
    env = {"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    (upper / "cdi" / "gpu-ctk.json").write_text(generate_spec(config))
    # conmon starts the runtime without podman's environment: a wrapper names the configuration
    runtime = root / "gpu-container-runtime"
    runtime.write_text(f"#!/bin/sh\nGPU_CONTAINER_SHIM_CONFIG={config} "
                       f"exec {SHIM} \"$@\"\n")
    runtime.chmod(0o755)
    base = ["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
            "--tmpdir", str(root / "tmp"), "--network-config-dir", str(root / "net"),
            "--storage-driver", "vfs", "--runtime", str(runtime), "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]
    overlay = (f"mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/etc,"
               f"upperdir={upper},workdir={work} /etc && exec \"$@\"")

    def podman(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "--mount", "sh", "-c", overlay, "sh", *base, *args],
                              capture_output=True, text=True, timeout=90, check=False,
                              env=env)

    try:
        yield podman
    finally:
        podman("rm", "--all", "--force")
        sweep(root)


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, host: SimHost) -> Iterator[Podman]:
    """podman over the shim with the simulated host's configuration as it is (hook mode)."""
    yield from start_podman(tmp_path_factory.mktemp("podman-cdi"), host.config_path)


@pytest.fixture(scope="module")
def podman_spec(tmp_path_factory: pytest.TempPathFactory, host: SimHost) -> Iterator[Podman]:
    """podman over the shim running the simulated host in spec mode (README §Spec mode)."""
    root = tmp_path_factory.mktemp("pcs")  # podman: runroot under 50 characters
    yield from start_podman(root, write_spec_config(host, root / "shim.yaml"))


@pytest.fixture(params=["hook", "spec"])
def mode(request: pytest.FixtureRequest) -> str:
    chosen: str = request.param
    return chosen


@pytest.fixture
def podman_in_mode(request: pytest.FixtureRequest, mode: str) -> Podman:
    """The podman of each mode, for the tests whose shape is the same in both."""
    engine: Podman = request.getfixturevalue("podman" if mode == "hook" else "podman_spec")
    return engine


def test_generated_spec_names_gpu_zero(host: SimHost) -> None:
    """The CDI spec the test hands podman is ours, and defines the device it asks for."""
    spec = json.loads(generate_spec(host.config_path))
    assert spec["kind"] == "nvidia.com/gpu"
    assert "0" in [device["name"] for device in spec["devices"]]


@pytest.mark.parametrize("visible", ["void", "all", None])
def test_cdi_injected_container_is_not_widened(podman_in_mode: Podman, mode: str,
                                               host: SimHost, busybox_image: Path,
                                               tmp_path: Path, visible: str | None) -> None:
    """``--device nvidia.com/gpu=0`` through the shim (hook and spec mode), whatever
    NVIDIA_VISIBLE_DEVICES says: /dev/nvidia0 is inside and usable (ENXIO, not EPERM), no other
    GPU node is, the shim injected no hook of ours, and the guaranteed policy still applied,
    placed by GPU 0's NUMA node."""
    podman = podman_in_mode
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    cidfile = tmp_path / "cid"
    env = [] if visible is None else ["-e", f"NVIDIA_VISIBLE_DEVICES={visible}"]
    result = podman(*RUN, "--cidfile", str(cidfile), "--device", "nvidia.com/gpu=0", *env,
                    "--memory", "64m", "--annotation", "ai.scheduling.policy=guaranteed",
                    "--rootfs", str(rootfs), "/bin/sh", "-c", "ls /dev; head -c1 /dev/nvidia0")
    nodes = result.stdout.split()
    assert "nvidia0" in nodes, result.stdout + result.stderr
    assert [n for n in nodes if n.startswith("nvidia") and n[6:].isdigit()] == ["nvidia0"]
    assert ENXIO in result.stderr and EPERM not in result.stderr, result.stderr
    container = cidfile.read_text().strip()
    [line] = [line for line in (host.dir / "log" / "gpu-container-shim.log").read_text()
              .splitlines() if f" id={container} " in line and "cmd=create" in line]
    assert "devices: CDI-injected by the engine (/dev/nvidia0): not widened" in line
    assert "hook: not injected" in line and "devices: added" not in line
    assert "policy: guaranteed (from annotation)" in line
    assert "policy: linux.resources.memory.swap 67108864" in line
    assert "numa: policy guaranteed: " in line and "GPU 0 on node 0" in line


def test_spec_mode_gpu_two_sees_the_driver_nvidia_smi_and_an_ld_cache(
        podman_spec: Podman, host: SimHost, busybox_image: Path, tmp_path: Path) -> None:
    """``podman run -e NVIDIA_VISIBLE_DEVICES=2`` (no CDI device) through the shim in spec
    mode: GPU 2's node alone and usable, the driver libraries, ``nvidia-smi -L`` naming GPU 2,
    ModifyDeviceFiles 0 and an ld cache resolving libcuda.so.1."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    result = podman_spec(*RUN, "-e", "NVIDIA_VISIBLE_DEVICES=2", "--rootfs", str(rootfs),
                         "/bin/sh", "-c", PROBE.format(minor=2))
    assert_sees_one_gpu(result.stdout, result.stderr, host, 2)
