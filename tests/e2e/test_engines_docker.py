"""dockerd on the simulated DGX A100: a daemon.json written by ``gpu-ctk runtime configure``
(``--runtime gpu``) and stock ``--gpus`` through the standalone hook's
``nvidia-container-runtime-hook`` name, each container opening /dev/nvidia0 from inside.

One private dockerd per module (its own data-root, exec-root, socket, pidfile; no iptables, no
bridge) with the simulated host's config in its environment: dockerd hands its environment to
the shim (through containerd) and to the ``--gpus`` prestart hook. A second dockerd, started
only for the tests that need it, runs the shim in spec mode.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from engines import (
    ENXIO,
    EPERM,
    SHIM,
    SYSTEM_PATH,
    Daemon,
    gpu_ctk,
    installed_hook,
    listening,
)
from spec_mode import PROBE as SPEC_PROBE
from spec_mode import assert_sees_one_gpu
from spec_mode import write_config as write_spec_config

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

SimHostFactory = Callable[..., "SimHost"]
IMAGE = "gpu-e2e/busybox:1"
PROBE = "ls -l /dev/nvidia0; head -c1 /dev/nvidia0"
NODE_ZERO = "195,   0"


@dataclass
class Docker:
    """The module's dockerd and the simulated host it serves."""

    daemon: Daemon
    socket: Path
    host: SimHost

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", f"unix://{self.socket}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--rm", "--network", "none", *args)

    def hook_events(self, event: str) -> list[str]:
        log = self.host.dir / "log" / "gpu-container-shim.log"
        return [line for line in log.read_text().splitlines()
                if "cmd=hook" in line and f" event={event} " in line]


def start_docker(root: Path, host: SimHost, config: Path,
                 busybox_image: Path) -> Iterator[Docker]:
    """A private dockerd on ``root`` whose environment names shim configuration ``config``,
    with the busybox image imported; stopped with everything it started at the end."""
    daemon_json = root / "daemon.json"
    gpu_ctk("runtime", "configure", "--runtime", "docker", "--config", str(daemon_json),
            "--runtime-path", SHIM)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    # dockerd offers --gpus only when this name is on its PATH: the venv's console script.
    (bin_dir / "nvidia-container-runtime-hook").symlink_to(installed_hook())
    socket = root / "docker.sock"
    daemon = Daemon(
        "dockerd", root,
        ["dockerd", "--config-file", str(daemon_json), "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "-H", f"unix://{socket}",
         "--pidfile", str(root / "docker.pid"), "--iptables=false", "--bridge=none"],
        {"PATH": f"{bin_dir}:{SYSTEM_PATH}", "GPU_CONTAINER_SHIM_CONFIG": str(config)},
        listening(socket, ["docker", "-H", f"unix://{socket}", "version"]))
    daemon.start()
    engine = Docker(daemon, socket, host)
    try:
        tar = subprocess.run(["tar", "-C", str(busybox_image), "-c", "."], capture_output=True,
                             check=True).stdout
        imported = subprocess.run(["docker", "-H", f"unix://{socket}", "import", "-", IMAGE],
                                  input=tar, capture_output=True, timeout=60, check=False)
        assert imported.returncode == 0, imported.stderr
        yield engine
    finally:
        leftovers = engine("ps", "-aq").stdout.split()
        if leftovers:
            engine("rm", "-f", *leftovers)
        daemon.stop()


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory, sim_host_factory: SimHostFactory,
           busybox_image: Path) -> Iterator[Docker]:
    """dockerd with the simulated host's configuration as it is (hook mode)."""
    host = sim_host_factory("dgx-a100")
    yield from start_docker(tmp_path_factory.mktemp("dockerd"), host, host.config_path,
                            busybox_image)


@pytest.fixture(scope="module")
def docker_spec(tmp_path_factory: pytest.TempPathFactory, sim_host_factory: SimHostFactory,
                busybox_image: Path) -> Iterator[Docker]:
    """dockerd whose shim runs the simulated host in spec mode (README §Spec mode)."""
    host = sim_host_factory("dgx-a100")
    root = tmp_path_factory.mktemp("dockerd-spec")
    config = write_spec_config(host, root / "config.yaml")
    yield from start_docker(root, host, config, busybox_image)


@pytest.fixture(params=["hook", "spec"])
def docker_in_mode(request: pytest.FixtureRequest) -> Docker:
    """The dockerd of each mode, for the tests whose shape is the same in both."""
    engine: Docker = request.getfixturevalue("docker" if request.param == "hook"
                                             else "docker_spec")
    return engine


def test_runtime_from_configured_daemon_json_gives_gpu_zero(docker_in_mode: Docker) -> None:
    """``docker run --runtime gpu -e NVIDIA_VISIBLE_DEVICES=0`` (hook and spec mode):
    /dev/nvidia0 (c 195:0) is in the container and the device cgroup lets it open it (ENXIO
    from the node-less driver)."""
    result = docker_in_mode.run("--runtime", "gpu", "-e", "NVIDIA_VISIBLE_DEVICES=0", IMAGE,
                        "/bin/sh", "-c", PROBE)
    assert NODE_ZERO in result.stdout and result.stdout.rstrip().endswith("/dev/nvidia0"), \
        result.stdout + result.stderr
    assert ENXIO in result.stderr and EPERM not in result.stderr, result.stderr


def test_spec_mode_gpu_two_sees_the_driver_nvidia_smi_and_an_ld_cache(
        docker_spec: Docker) -> None:
    """``docker run --runtime gpu -e NVIDIA_VISIBLE_DEVICES=2`` in spec mode: GPU 2's node
    alone and usable, the driver libraries, ``nvidia-smi -L`` naming GPU 2, ModifyDeviceFiles
    0 and an ld cache resolving libcuda.so.1."""
    result = docker_spec.run("--runtime", "gpu", "-e", "NVIDIA_VISIBLE_DEVICES=2", IMAGE,
                             "/bin/sh", "-c", SPEC_PROBE.format(minor=2))
    assert_sees_one_gpu(result.stdout, result.stderr, docker_spec.host, 2)


def test_engine_given_device_is_not_widened(docker_in_mode: Docker) -> None:
    """``docker run --runtime gpu --device <GPU 3's node>:/dev/nvidia3`` with
    NVIDIA_VISIBLE_DEVICES=all (hook and spec mode): the engine's NVIDIA device is the
    container's only GPU; the shim adds no other (README §Beside CDI and DRA)."""
    node = docker_in_mode.host.dev_dir / "nvidia3"
    result = docker_in_mode.run("--runtime", "gpu", "--device", f"{node}:/dev/nvidia3",
                                "-e", "NVIDIA_VISIBLE_DEVICES=all", IMAGE, "/bin/sh", "-c",
                                "ls /dev; head -c1 /dev/nvidia3")
    gpus = [n for n in result.stdout.split() if n.startswith("nvidia") and n[6:].isdigit()]
    assert gpus == ["nvidia3"], result.stdout + result.stderr
    assert ENXIO in result.stderr and EPERM not in result.stderr, result.stderr


def test_gpus_flag_runs_the_standalone_hook_with_stock_runc(docker: Docker) -> None:
    """``docker run --gpus device=0`` (default runtime runc, no daemon.json change for it):
    the hook mounts /dev/nvidia0 and grants it in the device cgroup, so opening it gives ENXIO,
    not EPERM."""
    result = docker.run("--gpus", "device=0", IMAGE, "/bin/sh", "-c", PROBE)
    assert NODE_ZERO in result.stdout, result.stdout + result.stderr
    assert ENXIO in result.stderr and EPERM not in result.stderr, result.stderr
    granted = [line for line in docker.hook_events("cgroup") if "/dev/nvidia0=195:0" in line]
    assert granted, docker.hook_events("cgroup")


def test_gpus_flag_with_an_unknown_device_fails_in_one_line(docker: Docker) -> None:
    """``--gpus device=9`` on an 8-GPU host: the container does not start and docker shows the
    hook's one-line error naming the device."""
    result = docker.run("--gpus", "device=9", IMAGE, "/bin/true")
    assert result.returncode != 0
    assert "gpu-container-hook: " in result.stderr and "unknown device" in result.stderr, \
        result.stderr
