"""Spec mode end to end, the shim's own NVML work and the failures (README §Spec mode): the
readiness wait, its deadline and the retry of transient NVML errors now run in the shim's
create; CUDA requirements are refused there; the lean hook refuses a dynamic host ldconfig in
one line and never sees the container's LD_PRELOAD. Real runc on the simulated DGX A100."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from containers import Bundle, Runtime
from elf_libs import build_preload_marker
from spec_mode import SPEC_HOOK_NAME, container_cache, first_path, spec_runtime

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]


FAST = {"readiness": {"timeout": 5, "interval": 0.05},
        "retry": {"initial_backoff": 0.05, "max_backoff": 0.1}}


def create_line(host: SimHost) -> str:
    """The shim's one log line of the last container start."""
    lines = [line for line in (host.dir / "log" / "gpu-container-shim.log").read_text()
             .splitlines() if " cmd=run " in line or " cmd=create " in line]
    return lines[-1]


def test_readiness_wait_in_the_shim_lets_a_binding_device_start(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """nvml-not-ready=5: the shim's create polls until GPU 2 answers (no hook of
    libnvidia-container waits in spec mode), then the container starts."""
    host = sim_host_factory("dgx-a100", faults=["nvml-not-ready=5"])
    bundle = make_bundle(["/bin/ls", "/dev/nvidia2"], env=["NVIDIA_VISIBLE_DEVICES=2"])
    result = spec_runtime(host, make_runtime, write_config, **FAST).run(bundle)
    assert result.returncode == 0, result.stderr
    assert "readiness: 1 ready after 6 polls " in create_line(host)


def test_readiness_deadline_fails_in_one_line_and_leaves_config(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """More not-ready answers than the deadline allows: the create fails with the shim's one
    line naming GPU 2 and NVML's answer, and config.json is byte for byte as it was."""
    host = sim_host_factory("dgx-a100", faults=["nvml-not-ready=100000"])
    uuid = host.topology["gpus"][2]["uuid"]
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=2"])
    before = bundle.config_path.read_bytes()
    result = spec_runtime(host, make_runtime, write_config,
                       readiness={"timeout": 0.5, "interval": 0.1}).run(bundle)
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert line.startswith("gpu-container-runtime: readiness: 1 device not ready after 0.")
    assert f"GPU 2 ({uuid}): nvmlDeviceGetHandleByUUID: Not Found (NVML error 6)" in line
    assert bundle.config_path.read_bytes() == before


def test_transient_nvml_errors_are_retried_in_the_shim(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """nvml-unknown-error=2: discovery fails twice with NVML's Unknown Error, is retried, and
    the container starts with its GPU."""
    host = sim_host_factory("dgx-a100", faults=["nvml-unknown-error=2"])
    bundle = make_bundle(["/bin/ls", "/dev/nvidia2"], env=["NVIDIA_VISIBLE_DEVICES=2"])
    result = spec_runtime(host, make_runtime, write_config, **FAST).run(bundle)
    assert result.returncode == 0, result.stderr
    line = create_line(host)
    assert "discovery: attempt 1/5 failed: " in line and "discovery: attempt 2/5 failed: " in line
    assert "attempt 3/5" not in line


@pytest.mark.parametrize("env", [["NVIDIA_VISIBLE_DEVICES=2", "NVIDIA_REQUIRE_CUDA=cuda>=99.0"],
                                 ["CUDA_VERSION=12.4.1"]], ids=["require", "legacy-image"])
def test_unsatisfied_cuda_requirement_fails_in_one_line_and_leaves_config(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, env: list[str]) -> None:
    """A CUDA requirement the 12.2 driver does not meet (NVIDIA_REQUIRE_CUDA, or a legacy
    image's CUDA_VERSION): the shim refuses the create in one line naming the condition and
    config.json is as it was; NVIDIA_DISABLE_REQUIRE=true lets the same container start."""
    host = sim_host_factory("dgx-a100")
    runtime = spec_runtime(host, make_runtime, write_config)
    bundle = make_bundle(env=env)
    before = bundle.config_path.read_bytes()
    refused = runtime.run(bundle)
    assert refused.returncode != 0
    [line] = refused.stderr.splitlines()
    assert line.startswith("gpu-container-runtime: requirements: unsatisfied condition: cuda>=")
    assert bundle.config_path.read_bytes() == before
    allowed = runtime.run(make_bundle(env=[*env, "NVIDIA_DISABLE_REQUIRE=true"]))
    assert allowed.returncode == 0, allowed.stderr


def test_dynamic_host_ldconfig_fails_the_start_in_one_hook_line(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """``spec.ldconfig`` naming a dynamic executable: the lean hook refuses to run it (it
    would load the image's ld.so inside the jail) and runc shows the hook's one line."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=2"])
    runtime = spec_runtime(host, make_runtime, write_config, spec={"ldconfig": "/bin/ls"})
    result = runtime.run(bundle)
    assert result.returncode != 0
    hook_lines = [line for line in result.stderr.split("\\n") if SPEC_HOOK_NAME + ": " in line]
    assert len(hook_lines) == 1, result.stderr
    assert hook_lines[0].endswith("gpu-container-spec-hook: ldconfig: /bin/ls: a dynamic "
                                  "executable (PT_INTERP); the host ldconfig must be static")




def test_container_ld_preload_never_reaches_the_spec_hook(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path) -> None:
    """A container asking for LD_PRELOAD of a host library (CVE-2025-23266's shape) starts with
    its GPU and ld cache, and the library was never loaded into the root hook or its
    ldconfig: the hook entry carries its own explicit environment."""
    library, marker = build_preload_marker(tmp_path)
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/ls", "/dev/nvidia2"],
                         env=["NVIDIA_VISIBLE_DEVICES=2", f"LD_PRELOAD={library}"])
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert first_path(container_cache(bundle), "libcuda.so.1") == "/usr/lib64/libcuda.so.1"
    assert not marker.exists()


def test_ld_so_conf_fifo_is_cut_off_at_the_hook_timeout_in_one_line(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """An image whose /etc/ld.so.conf is a FIFO nobody writes (ldconfig would block reading it
    forever): the lean hook kills ldconfig at its deadline (``spec.hook_timeout`` 2 s) and the
    start fails with the hook's one line saying so."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=2"])
    os.mkfifo(bundle.path / "rootfs" / "etc" / "ld.so.conf")
    runtime = spec_runtime(host, make_runtime, write_config, spec={"hook_timeout": 2})
    result = runtime.run(bundle)
    assert result.returncode != 0
    hook_lines = [line for line in result.stderr.split("\\n") if SPEC_HOOK_NAME + ": " in line]
    assert len(hook_lines) == 1, result.stderr
    assert "did not finish before the hook's timeout" in hook_lines[0], result.stderr
