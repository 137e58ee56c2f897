"""The prestart hook end to end: real runc through the shim on the simulated DGX A100, each
container on an overlay rootfs so the image itself never changes.

What the hook must show: the driver and the device inside the container with the ld cache
listing the libraries; retries of a transient ``nvc_init``; a permanent one failing in one line
inside the hook timeout; the readiness wait and its deadline; ``NVIDIA_REQUIRE_*`` and its
opt-out; and that a container's ``LD_PRELOAD`` never reaches the hook.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import yaml
from containers import Bundle, Runtime, tree_digest
from elf_libs import build_preload_marker

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

FAST_RETRY = {"initial_backoff": 0.05, "max_backoff": 0.1}


def shim_on(host: SimHost, make_runtime: MakeRuntime, write_config: WriteConfig,
            low_level: str = "runc", **sections: dict[str, Any]) -> Runtime:
    """A runtime whose shim config is the simulated host's with ``sections`` merged in."""
    document = yaml.safe_load(host.config_path.read_text())
    for name, values in sections.items():
        document.setdefault(name, {}).update(values)
    document["runtimes"] = [low_level]
    return make_runtime(write_config(yaml.safe_dump(document)), low_level)


def hook_log(host: SimHost, event: str) -> list[str]:
    """The hook's lines of one event in the host's log."""
    text = (host.dir / "log" / "gpu-container-shim.log").read_text()
    return [line for line in text.splitlines() if "cmd=hook" in line and f" event={event} "
            in line]


def test_gpu_zero_gets_its_node_the_driver_and_an_ld_cache(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, busybox_image: Path, low_level: str) -> None:
    """NVIDIA_VISIBLE_DEVICES=0 (runc and crun): /dev/nvidia0 and libcuda.so.1 are inside, the
    container's ld cache lists the driver libraries, and the image on the host is unchanged."""
    host = sim_host_factory("dgx-a100")
    before = tree_digest(busybox_image)
    bundle = make_bundle(["/bin/sh", "-c", "ls -l /dev/nvidia0; ls /usr/lib64 /usr/lib/x86_64-"
                          "linux-gnu 2>/dev/null; ls /usr/bin"], env=["NVIDIA_VISIBLE_DEVICES=0"],
                         overlay=True)
    result = shim_on(host, make_runtime, write_config, low_level).run(bundle)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^c\S+\s+\d+\s+\S+\s+\S+\s+195,\s+0\s.*/dev/nvidia0$", result.stdout,
                     re.MULTILINE), result.stdout
    assert "libcuda.so.1" in result.stdout.split() and "nvidia-smi" in result.stdout.split()
    cache = subprocess.run(["ldconfig", "-p", "-C", str(bundle.path / "upper" / "etc" /
                                                        "ld.so.cache")],
                           capture_output=True, text=True, check=True).stdout
    assert re.search(r"^\s+libcuda\.so\.1 \(libc6,x86-64\) => /\S+/libcuda\.so\.1$", cache,
                     re.MULTILINE), cache
    assert "libnvidia-ml.so.1 " in cache
    assert tree_digest(busybox_image) == before
    [mounted] = hook_log(host, "mounted")
    assert f"gpus={host.topology['gpus'][0]['uuid']}" in mounted


def test_transient_init_failures_are_retried(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """nvc-init-transient=2: the container starts and the log shows two retries, each with
    libnvidia-container's message."""
    host = sim_host_factory("dgx-a100", faults=["nvc-init-transient=2"])
    bundle = make_bundle(["/bin/ls", "/dev/nvidia0"], env=["NVIDIA_VISIBLE_DEVICES=0"],
                         overlay=True)
    result = shim_on(host, make_runtime, write_config, retry=FAST_RETRY).run(bundle)
    assert result.returncode == 0, result.stderr
    retries = hook_log(host, "retry")
    assert len(retries) == 2
    for number, line in enumerate(retries, 1):
        assert (f'msg="initialization: attempt {number}/5 failed: nvc_init: cuda error: '
                f'unknown error; retrying in ') in line
    assert host.fault_uses("nvc-init-transient") == 3


def test_permanent_init_failure_is_one_line_inside_the_timeout(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """nvc-init-permanent: no retry, the start fails well inside the hook timeout, and runc
    shows the hook's one line."""
    message = "driver/library version mismatch"
    host = sim_host_factory("dgx-a100", faults=[f"nvc-init-permanent={message}"])
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=0"], overlay=True)
    runtime = shim_on(host, make_runtime, write_config, hook={"timeout": 10})
    started = time.monotonic()
    result = runtime.run(bundle)
    elapsed = time.monotonic() - started
    assert result.returncode != 0 and elapsed < 10
    line = f"gpu-container-hook: initialization error: {message}"
    assert "error running hook #0:" in result.stderr and line in result.stderr, result.stderr
    [logged] = hook_log(host, "error")
    assert f'msg="{line}"' in logged
    assert hook_log(host, "retry") == []


def test_readiness_wait_lets_a_binding_device_start(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """nvml-not-ready=5: the hook polls until GPU 0 answers, then the container starts."""
    host = sim_host_factory("dgx-a100", faults=["nvml-not-ready=5"])
    bundle = make_bundle(["/bin/ls", "/dev/nvidia0"], env=["NVIDIA_VISIBLE_DEVICES=0"],
                         overlay=True)
    runtime = shim_on(host, make_runtime, write_config,
                      readiness={"timeout": 10, "interval": 0.05})
    result = runtime.run(bundle)
    assert result.returncode == 0, result.stderr
    [ready] = hook_log(host, "readiness")
    assert "outcome=ready devices=1 polls=6 " in ready


def test_readiness_deadline_fails_naming_the_device(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """More not-ready answers than the deadline allows polls: the start fails naming GPU 2
    and NVML's last answer for it."""
    host = sim_host_factory("dgx-a100", faults=["nvml-not-ready=100000"])
    uuid = host.topology["gpus"][2]["uuid"]
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=2"], overlay=True)
    runtime = shim_on(host, make_runtime, write_config,
                      readiness={"timeout": 0.5, "interval": 0.1})
    result = runtime.run(bundle)
    assert result.returncode != 0
    assert re.search(r"gpu-container-hook: readiness error: 1 device not ready after 0\.[5-9]s "
                     rf"\(\d+ polls\): GPU 2 \({uuid}\): nvmlDeviceGetHandleByUUID: Not Found "
                     r"\(NVML error 6\)", result.stderr), result.stderr
    [timeout] = hook_log(host, "readiness")
    assert "outcome=timeout" in timeout


def test_unsatisfied_cuda_requirement_fails_and_can_be_disabled(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_REQUIRE_CUDA=cuda>=99.0 fails with the condition named; adding
    NVIDIA_DISABLE_REQUIRE=true lets the same container start."""
    host = sim_host_factory("dgx-a100")
    runtime = shim_on(host, make_runtime, write_config)
    env = ["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=99.0"]
    refused = runtime.run(make_bundle(env=env, overlay=True))
    assert refused.returncode != 0
    assert ("gpu-container-hook: requirements error: unsatisfied condition: cuda>=99.0"
            in refused.stderr), refused.stderr
    allowed = runtime.run(make_bundle(["/bin/ls", "/dev/nvidia0"],
                                      env=[*env, "NVIDIA_DISABLE_REQUIRE=true"], overlay=True))
    assert allowed.returncode == 0, allowed.stderr


def test_legacy_cuda_image_newer_than_the_driver_fails_naming_the_requirement(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """CUDA_VERSION=12.4.1 without NVIDIA_REQUIRE_CUDA on a CUDA 12.2 driver: the legacy rule
    requires cuda>=12.4 and the start fails with one line naming it."""
    host = sim_host_factory("dgx-a100")
    refused = shim_on(host, make_runtime, write_config).run(
        make_bundle(env=["CUDA_VERSION=12.4.1"], overlay=True))
    assert refused.returncode != 0
    lines = [line for line in refused.stderr.splitlines() if "gpu-container-hook" in line]
    assert len(lines) == 1, refused.stderr
    assert "requirements error: unsatisfied condition: cuda>=12.4" in lines[0]




def test_container_ld_preload_never_reaches_the_hook(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path) -> None:
    """A container asking for LD_PRELOAD of a host library (CVE-2025-23266's shape) starts
    with its GPU, and the library was never loaded into the root hook: the hook runs isolated
    with the explicit environment the shim gave its entry."""
    library, marker = build_preload_marker(tmp_path)
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/ls", "/dev/nvidia0"],
                         env=["NVIDIA_VISIBLE_DEVICES=0", f"LD_PRELOAD={library}"], overlay=True)
    result = shim_on(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert len(hook_log(host, "done")) == 1
    assert not marker.exists()


def test_mig_device_gets_its_parent_and_access_capabilities(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_VISIBLE_DEVICES=0:1 on the MIG host: the parent's node, the GPU- and
    compute-instance capability nodes and their /proc access files are inside, and the
    device cgroup lets the container open the capability nodes."""
    host = sim_host_factory("dgx-a100-mig")
    mig = host.topology["gpus"][0]["mig"]["devices"][1]
    gi, ci = mig["gi_cap_minor"], mig["ci_cap_minor"]
    caps = f"/proc/driver/nvidia/capabilities/gpu0/mig/gi{mig['gi']}"
    bundle = make_bundle(["/bin/sh", "-c", f"ls /dev /dev/nvidia-caps; cat {caps}/access "
                          f"{caps}/ci{mig['ci']}/access; head -c1 /dev/nvidia-caps/nvidia-cap{gi}"],
                         env=["NVIDIA_VISIBLE_DEVICES=0:1"], overlay=True)
    result = shim_on(host, make_runtime, write_config).run(bundle)
    assert result.returncode in (0, 1), result.stderr
    names = result.stdout.split()
    assert {"nvidia0", f"nvidia-cap{gi}", f"nvidia-cap{ci}"} <= set(names), result.stdout
    assert f"DeviceFileMinor: {gi}" in result.stdout
    assert f"DeviceFileMinor: {ci}" in result.stdout
    assert "Operation not permitted" not in result.stderr
    [mounted] = hook_log(host, "mounted")
    assert f"migs={mig['uuid']}" in mounted


def test_create_runtime_stage_works_like_prestart(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """With hook.stage createRuntime the hook runs at that stage and the GPU is there."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/ls", "/dev/nvidia1", "/usr/lib64/libcuda.so.1"],
                         env=["NVIDIA_VISIBLE_DEVICES=1"], overlay=True)
    result = shim_on(host, make_runtime, write_config, hook={"stage": "createRuntime"}).run(bundle)
    assert result.returncode == 0, result.stderr
    assert "createRuntime" in bundle.spec()["hooks"]
    [done] = hook_log(host, "done")
    assert " stage=createRuntime " in done


def test_image_symlink_out_of_the_rootfs_is_resolved_inside_it(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path) -> None:
    """An image whose /usr/lib64 is a symlink to a host directory (CVE-2024-0132's shape)
    gets the driver libraries inside its own root; the host directory stays empty."""
    host = sim_host_factory("dgx-a100")
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = make_bundle(["/bin/ls", f"{outside}/libcuda.so.1"],
                         env=["NVIDIA_VISIBLE_DEVICES=0"], overlay=True)
    (bundle.path / "rootfs" / "usr" / "lib64").symlink_to(outside)
    result = shim_on(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert list(outside.iterdir()) == []


def test_proc_driver_params_forbid_device_file_changes(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """The container's /proc/driver/nvidia is the library's tmpfs whose params read
    ModifyDeviceFiles: 0 (the driver will not create or fix up /dev/nvidia* from inside; NCT's
    disable-device-node-modification), while the host's file keeps 1."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/cat", "/proc/driver/nvidia/params"],
                         env=["NVIDIA_VISIBLE_DEVICES=0"], overlay=True)
    result = shim_on(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^ModifyDeviceFiles: 0$", result.stdout, re.MULTILINE), result.stdout
    assert "ModifyDeviceFiles: 1" not in result.stdout
    assert "ModifyDeviceFiles: 1\n" in (host.driver_dir / "proc/driver/nvidia/params").read_text()


def first_libcuda(cache: Path) -> str:
    """The path a container's ld cache gives ``libcuda.so.1`` first: the one the loader takes."""
    listing = subprocess.run(["ldconfig", "-p", "-C", str(cache)], capture_output=True,
                             text=True, check=True).stdout
    return next(line.split(" => ")[1] for line in listing.splitlines()
                if line.strip().startswith("libcuda.so.1 "))


@pytest.mark.parametrize(("offset", "winner"), [
    (1, "/usr/local/cuda/compat/libcuda.so.1"),
    (0, "/usr/lib64/libcuda.so.1"),
    (-65, "/usr/lib64/libcuda.so.1"),
])
def test_cuda_forward_compat_by_the_ld_cache(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, offset: int, winner: str) -> None:
    """An image with /usr/local/cuda/compat/libcuda.so.<major>.54.15: a major newer than the
    driver's puts the compat libcuda first in the container's ld cache (the hook passes
    cuda-compat-mode=ldconfig to libnvidia-container 1.17.8); the driver's own major or an
    older one leaves the driver's libcuda first. Nothing is mounted over either file."""
    host = sim_host_factory("dgx-a100")
    version = host.topology["driver_version"]
    name = f"libcuda.so.{int(version.split('.')[0]) + offset}.54.15"
    bundle = make_bundle(["/bin/sh", "-c", "grep -c ' /usr/local/cuda' /proc/self/mountinfo"],
                         env=["NVIDIA_VISIBLE_DEVICES=0"], overlay=True)
    compat = bundle.path / "rootfs" / "usr" / "local" / "cuda" / "compat"
    compat.mkdir(parents=True)
    driver_libcuda = host.driver_dir / "usr/lib/x86_64-linux-gnu" / f"libcuda.so.{version}"
    (compat / name).write_bytes(driver_libcuda.read_bytes())
    result = shim_on(host, make_runtime, write_config).run(bundle)
    assert result.stdout.strip() == "0", result.stdout + result.stderr
    assert first_libcuda(bundle.path / "upper" / "etc" / "ld.so.cache") == winner
