"""containerd on the simulated DGX A100: ``ctr run --runc-binary <shim>`` starting a GPU
container, and the files ``gpu-ctk runtime configure`` writes read by the real containerd
(``containerd config dump``) for version 2 (in place and as a drop-in) and version 3 inputs.

The daemon runs once per module on a private root, state and sockets with the CRI plugin off
(ctr needs none of it), started with the simulated host's config in its environment, which the
runc v2 shim passes on to our shim. A second daemon, started only for the tests that need it,
runs the shim in spec mode.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import tomlkit
from engines import ENXIO, EPERM, SHIM, SYSTEM_PATH, Daemon, copy_rootfs, gpu_ctk, listening
from spec_mode import PROBE, assert_sees_one_gpu
from spec_mode import write_config as write_spec_config

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

SimHostFactory = Callable[..., "SimHost"]
CRI_V2 = "io.containerd.grpc.v1.cri"
CRI_V3 = "io.containerd.cri.v1.runtime"

MAIN_V2 = """\
# Site containerd config (kept by gpu-ctk: comments, order, indentation).
version = 2
root = "{root}/root"
state = "{root}/state"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.example/pause:3.9"  # pinned on purpose
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
"""

MAIN_V3 = """\
version = 3
root = '{root}/root'
state = '{root}/state'

[plugins]
  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = true
"""


@dataclass
class Containerd:
    """The module's containerd and its ctr client."""

    daemon: Daemon
    address: Path

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.address), *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


def start_containerd(root: Path, config: Path) -> Iterator[Containerd]:
    """A private containerd on ``root`` whose environment names shim configuration
    ``config``; stopped with everything it started at the end."""
    address = root / "containerd.sock"
    toml = root / "config.toml"
    toml.write_text(
        f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n'
        f'disabled_plugins = ["{CRI_V2}"]\n'
        f'[grpc]\n  address = "{address}"\n[ttrpc]\n  address = "{root}/ttrpc.sock"\n'
        f'[debug]\n  address = "{root}/debug.sock"\n')
    daemon = Daemon("containerd", root, ["containerd", "--config", str(toml)],
                    {"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)},
                    listening(address, ["ctr", "--address", str(address), "version"]))
    daemon.start()
    try:
        yield Containerd(daemon, address)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory,
               sim_host_factory: SimHostFactory) -> Iterator[Containerd]:
    """containerd with the simulated host's configuration as it is (hook mode)."""
    host = sim_host_factory("dgx-a100")
    yield from start_containerd(tmp_path_factory.mktemp("containerd"), host.config_path)


@pytest.fixture(scope="module")
def spec_host(sim_host_factory: SimHostFactory) -> SimHost:
    return sim_host_factory("dgx-a100")


@pytest.fixture(scope="module")
def containerd_spec(tmp_path_factory: pytest.TempPathFactory,
                    spec_host: SimHost) -> Iterator[Containerd]:
    """containerd whose shim runs the simulated host in spec mode (README §Spec mode)."""
    root = tmp_path_factory.mktemp("containerd-spec")
    yield from start_containerd(root, write_spec_config(spec_host, root / "shim.yaml"))


@pytest.fixture(params=["hook", "spec"])
def containerd_in_mode(request: pytest.FixtureRequest) -> Containerd:
    """The containerd of each mode, for the tests whose shape is the same in both."""
    engine: Containerd = request.getfixturevalue("containerd" if request.param == "hook"
                                                 else "containerd_spec")
    return engine


def dump(config: Path) -> dict[str, Any]:
    """What the real containerd makes of ``config`` and its imports."""
    result = subprocess.run(["containerd", "--config", str(config), "config", "dump"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    merged: dict[str, Any] = tomlkit.parse(result.stdout).unwrap()
    return merged


def test_ctr_runs_a_gpu_container_through_the_shim(
        containerd_in_mode: Containerd, busybox_image: Path, tmp_path: Path) -> None:
    """``ctr run --runc-binary gpu-container-runtime`` with NVIDIA_VISIBLE_DEVICES=0 (hook and
    spec mode): the container has /dev/nvidia0 and may open it (ENXIO, not EPERM)."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    result = containerd_in_mode.ctr("run", "--rm", "--runc-binary", SHIM, "--rootfs",
                            "--env", "NVIDIA_VISIBLE_DEVICES=0", str(rootfs), name,
                            "/bin/sh", "-c", "ls -l /dev/nvidia0; head -c1 /dev/nvidia0")
    assert "195,   0" in result.stdout, result.stdout + result.stderr
    assert ENXIO in result.stdout + result.stderr
    assert EPERM not in result.stdout + result.stderr


def test_spec_mode_gpu_two_sees_the_driver_nvidia_smi_and_an_ld_cache(
        containerd_spec: Containerd, spec_host: SimHost, busybox_image: Path,
        tmp_path: Path) -> None:
    """``ctr run`` through the shim in spec mode with NVIDIA_VISIBLE_DEVICES=2: GPU 2's node
    alone and usable, the driver libraries, ``nvidia-smi -L`` naming GPU 2, ModifyDeviceFiles
    0 and an ld cache resolving libcuda.so.1 (ctr's stdout and stderr come as one stream)."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    result = containerd_spec.ctr("run", "--rm", "--runc-binary", SHIM, "--rootfs",
                                 "--env", "NVIDIA_VISIBLE_DEVICES=2", str(rootfs), name,
                                 "/bin/sh", "-c", PROBE.format(minor=2))
    assert_sees_one_gpu(result.stdout, result.stdout + result.stderr, spec_host, 2)


def test_configured_v2_file_in_place_is_what_containerd_reads(tmp_path: Path) -> None:
    """Version 2, in place: containerd's merged view has the gpu runtime (runc v2 shim, our
    binary, runc's SystemdCgroup) next to runc, and the site's sandbox_image."""
    config = tmp_path / "config.toml"
    config.write_text(MAIN_V2.format(root=tmp_path))
    gpu_ctk("runtime", "configure", "--runtime", "containerd", "--config", str(config),
            "--runtime-path", SHIM)
    cri = dump(config)["plugins"][CRI_V2]
    runtimes = cri["containerd"]["runtimes"]
    assert runtimes["gpu"]["runtime_type"] == "io.containerd.runc.v2"
    assert runtimes["gpu"]["options"]["BinaryName"] == SHIM
    assert runtimes["gpu"]["options"]["SystemdCgroup"] is True
    assert runtimes["runc"]["options"]["SystemdCgroup"] is True
    assert cri["sandbox_image"] == "registry.example/pause:3.9"


def test_configured_v2_drop_in_keeps_the_main_files_cri_settings(tmp_path: Path) -> None:
    """Version 2 with --drop-in and --set-as-default: containerd 1.x replaces the CRI table
    with the imported one, which therefore carries the site's settings, runc and ours."""
    config = tmp_path / "config.toml"
    config.write_text(MAIN_V2.format(root=tmp_path))
    gpu_ctk("runtime", "configure", "--runtime", "containerd", "--config", str(config),
            "--runtime-path", SHIM, "--drop-in", "--set-as-default")
    merged = dump(config)
    cri = merged["plugins"][CRI_V2]
    assert str(tmp_path / "conf.d" / "99-gpu.toml") in merged["imports"]
    assert cri["containerd"]["default_runtime_name"] == "gpu"
    assert cri["containerd"]["runtimes"]["gpu"]["options"]["BinaryName"] == SHIM
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["sandbox_image"] == "registry.example/pause:3.9"


def test_configured_v3_file_and_drop_in_are_loaded_by_containerd(tmp_path: Path) -> None:
    """Version 3: the main file imports the drop-in and containerd loads both (1.6 here knows
    no v3 plugin names, so the drop-in's content is checked as TOML: our runtime, version 3)."""
    config = tmp_path / "config.toml"
    config.write_text(MAIN_V3.format(root=tmp_path))
    gpu_ctk("runtime", "configure", "--runtime", "containerd", "--config", str(config),
            "--runtime-path", SHIM)
    drop_in = tmp_path / "conf.d" / "99-gpu.toml"
    assert str(drop_in) in dump(config)["imports"]
    written = tomlkit.parse(drop_in.read_text()).unwrap()
    assert written["version"] == 3
    gpu = written["plugins"][CRI_V3]["containerd"]["runtimes"]["gpu"]
    assert gpu == {"runtime_type": "io.containerd.runc.v2",
                   "options": {"SystemdCgroup": True, "BinaryName": SHIM}}
