"""podman injecting ``nvidia.com/gpu=0`` from the CDI spec ``gpu-ctk cdi generate`` wrote for
the simulated DGX A100, with our shim as its runtime: the container keeps exactly the engine's
device (no /dev/nvidia1..7 added for ``NVIDIA_VISIBLE_DEVICES=all``, no hook of ours), and its
workload policy still applies (README §Beside CDI and DRA) — with the shim in hook mode and in
spec mode, where a plain ``NVIDIA_VISIBLE_DEVICES=2`` container also gets its GPU, the driver
and an ld cache (README §Spec mode); the spec's ``createContainer`` hook runs at the
container's creation with the arguments the spec gives it.

podman 4.3 reads CDI specs only from /etc/cdi and /var/run/cdi, so every podman call runs in a
private mount namespace whose /etc is an overlay: the spec is written to that overlay's upper
directory, and the machine's own /etc never changes. Each hook path gets its own spec and podman
root (``podman_for``): a recording stand-in here shows what the engine hands the hook.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import pytest
from engines import ENXIO, EPERM, GPU_CTK, SHIM, SYSTEM_PATH, VENV_BIN, copy_rootfs, sweep
from spec_mode import PROBE, assert_sees_one_gpu
from spec_mode import write_config as write_spec_config

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

SimHostFactory = Callable[..., "SimHost"]
Podman = Callable[..., "subprocess.CompletedProcess[str]"]
SPEC_HOOK = str(VENV_BIN / "gpu-container-spec-hook")
LIBS = "/usr/lib/x86_64-linux-gnu"
RUN = ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def host(sim_host_factory: SimHostFactory) -> SimHost:
    return sim_host_factory("dgx-a100")


def generate_spec(config: Path, *args: str) -> str:
    """``gpu-ctk cdi generate --format json`` under shim configuration ``config``."""
    env = {"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    return subprocess.run([GPU_CTK, "cdi", "generate", "--format", "json", *args],
                          capture_output=True, text=True, timeout=60, check=True, env=env).stdout


@pytest.fixture(scope="module")
def podman_for(tmp_path_factory: pytest.TempPathFactory, host: SimHost
               ) -> Iterator[Callable[[str], Podman]]:
    """podman whose CDI spec names the hook at the given path (one root per path)."""
    made: dict[str, tuple[Podman, Path]] = {}

    def make(hook_path: str) -> Podman:
        if hook_path not in made:
            root = tmp_path_factory.mktemp("podman-cdi")
            made[hook_path] = (start_podman(root, host.config_path, hook_path), root)
        return made[hook_path][0]

    try:
        yield make
    finally:
        for podman, root in made.values():
            podman("rm", "--all", "--force")
            sweep(root)


def start_podman(root: Path, config: Path, hook_path: Optional[str] = None) -> Podman:
    """podman on private directories under ``root``, with our shim (configuration ``config``)
    as its runtime and the CDI spec generated under that configuration (its hook at
    ``hook_path`` when given) in its /etc/cdi."""
    upper, work = root / "etc-upper", root / "etc-work"
    (upper / "cdi").mkdir(parents=True)
    work.mkdir()
    env = {"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    spec = generate_spec(config, *(("--hook-path", hook_path) if hook_path else ()))
    (upper / "cdi" / "gpu-ctk.json").write_text(spec)
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

    return podman


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the spec hook that keeps its arguments and the OCI state it was given,
    one pair of files per run; named like the real one, so the shim sees the spec a real
    generated one gives (an engine-injected hook of that name is not the shim's own edit)."""
    where = tmp_path_factory.mktemp("hook-runs")
    script = where / "gpu-container-spec-hook"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {where}/args-$$\n"
                      f"cat > {where}/state-$$\n")
    script.chmod(0o755)
    return script


@pytest.fixture(scope="module")
def podman(podman_for: Callable[[str], Podman], recorder: Path) -> Podman:
    return podman_for(str(recorder))


@pytest.fixture(scope="module")
def podman_spec(tmp_path_factory: pytest.TempPathFactory, host: SimHost) -> Iterator[Podman]:
    """podman over the shim running the simulated host in spec mode (README §Spec mode); its
    CDI spec's hook is the one that configuration names (the venv's spec hook)."""
    root = tmp_path_factory.mktemp("pcs")  # podman: runroot under 50 characters
    podman = start_podman(root, write_spec_config(host, root / "shim.yaml"))
    try:
        yield podman
    finally:
        podman("rm", "--all", "--force")
        sweep(root)


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


def test_spec_hook_runs_at_container_creation_with_its_arguments(
        podman: Podman, host: SimHost, recorder: Path, busybox_image: Path,
        tmp_path: Path) -> None:
    """The generated spec's createContainer hook reaches runc through podman and the shim:
    it ran once for the container, given its OCI state, the library directory, the driver
    version and the driver's /proc/driver/nvidia."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    cidfile = tmp_path / "cid"
    result = podman(*RUN, "--cidfile", str(cidfile), "--device", "nvidia.com/gpu=0",
                    "--rootfs", str(rootfs), "/bin/true")
    assert result.returncode == 0, result.stderr
    container = cidfile.read_text().strip()
    runs = [path for path in recorder.parent.glob("state-*")
            if json.loads(path.read_text() or "{}").get("id") == container]
    assert len(runs) == 1, [path.name for path in recorder.parent.iterdir()]
    args = (recorder.parent / runs[0].name.replace("state-", "args-")).read_text().splitlines()
    assert args[:2] == ["--folder", "/usr/lib/x86_64-linux-gnu"]
    assert args[args.index("--driver-version") + 1] == host.topology["driver_version"]
    assert args[args.index("--proc-driver") + 1] == f"{host.driver_dir}/proc/driver/nvidia"


@pytest.fixture(scope="module")
def spec_hooked(podman_for: Callable[[str], Podman]) -> Podman:
    """podman whose CDI spec names the venv's real gpu-container-spec-hook."""
    assert os.access(SPEC_HOOK, os.X_OK), f"{SPEC_HOOK} missing: reinstall the venv"
    return podman_for(SPEC_HOOK)


def cache_listing(rootfs: Path) -> str:
    """``ldconfig -p`` of the ld cache the hook wrote into the container's rootfs."""
    return subprocess.run(["ldconfig", "-p", "-C", str(rootfs / "etc" / "ld.so.cache")],
                          capture_output=True, text=True, check=True).stdout


def test_cdi_container_gets_an_ld_cache_naming_libcuda(
        spec_hooked: Podman, busybox_image: Path, tmp_path: Path) -> None:
    """With the generated spec's hook, the container's ld cache names libcuda.so.1 and NVML in
    the library directory, libcuda.so is there, and /proc/driver/nvidia/params says
    ModifyDeviceFiles: 0."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    result = spec_hooked(*RUN, "--device", "nvidia.com/gpu=0", "--rootfs", str(rootfs),
                         "/bin/sh", "-c", f"ls {LIBS}; cat /proc/driver/nvidia/params")
    assert result.returncode == 0, result.stderr
    assert {"libcuda.so", "libcuda.so.1"} <= set(result.stdout.split()), result.stdout
    assert re.search(r"^ModifyDeviceFiles: 0$", result.stdout, re.MULTILINE), result.stdout
    cache = cache_listing(rootfs)
    assert re.search(rf"^\s+libcuda\.so\.1 \(libc6,x86-64\) => {LIBS}/libcuda\.so\.1$", cache,
                     re.MULTILINE), cache
    assert f"=> {LIBS}/libnvidia-ml.so.1" in cache


@pytest.mark.parametrize(("offset", "winner"), [
    (1, "/usr/local/cuda/compat/libcuda.so.1"),
    (-1, f"{LIBS}/libcuda.so.1"),
])
def test_cdi_container_prefers_a_newer_cuda_compat_libcuda(
        spec_hooked: Podman, host: SimHost, busybox_image: Path, tmp_path: Path,
        offset: int, winner: str) -> None:
    """An image with /usr/local/cuda/compat/libcuda.so.<major>.54.15: a major newer than the
    driver's comes first in the ld cache (forward compatibility), an older one does not."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    version = host.topology["driver_version"]
    compat = rootfs / "usr" / "local" / "cuda" / "compat"
    compat.mkdir(parents=True)
    (compat / f"libcuda.so.{int(version.split('.')[0]) + offset}.54.15").write_bytes(
        (host.driver_dir / LIBS.lstrip("/") / f"libcuda.so.{version}").read_bytes())
    result = spec_hooked(*RUN, "--device", "nvidia.com/gpu=0", "--rootfs", str(rootfs),
                         "/bin/true")
    assert result.returncode == 0, result.stderr
    first = next(line.split(" => ")[1] for line in cache_listing(rootfs).splitlines()
                 if line.strip().startswith("libcuda.so.1 "))
    assert first == winner


def test_spec_mode_gpu_two_sees_the_driver_nvidia_smi_and_an_ld_cache(
        podman_spec: Podman, host: SimHost, busybox_image: Path, tmp_path: Path) -> None:
    """``podman run -e NVIDIA_VISIBLE_DEVICES=2`` (no CDI device) through the shim in spec
    mode: GPU 2's node alone and usable, the driver libraries, ``nvidia-smi -L`` naming GPU 2,
    ModifyDeviceFiles 0 and an ld cache resolving libcuda.so.1."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    result = podman_spec(*RUN, "-e", "NVIDIA_VISIBLE_DEVICES=2", "--rootfs", str(rootfs),
                         "/bin/sh", "-c", PROBE.format(minor=2))
    assert_sees_one_gpu(result.stdout, result.stderr, host, 2)


def test_spec_mode_cdi_container_gets_its_gpu_the_driver_and_an_ld_cache(
        podman_spec: Podman, host: SimHost, busybox_image: Path, tmp_path: Path) -> None:
    """``--device nvidia.com/gpu=2`` through the shim in spec mode: the CDI spec's own hook
    gives the engine-injected container its ld cache and ModifyDeviceFiles 0, and the shim adds
    nothing, so the container sees GPU 2 alone, as a request for it would (with no
    /proc/driver/nvidia/gpus entry: the spec's shared hook cannot know the device)."""
    rootfs = copy_rootfs(busybox_image, tmp_path / "rootfs")
    result = podman_spec(*RUN, "--device", "nvidia.com/gpu=2", "--rootfs", str(rootfs),
                         "/bin/sh", "-c", PROBE.format(minor=2))
    assert_sees_one_gpu(result.stdout, result.stderr, host, 2, proc_gpu=False)
