"""The spec hook as a real createContainer hook of runc and crun: the driver's libcuda bind-mounted
by the runtime (as the shim's spec mode declares it), and the container sees libcuda.so.1 in its
ld cache, the libcuda.so link and a read-only /proc/driver/nvidia with ModifyDeviceFiles: 0."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from containers import Bundle, Runtime
from elf_libs import build_shared_library

pytestmark = pytest.mark.e2e

HOOK = str(Path(sys.executable).parent / "gpu-container-spec-hook")
LIB = "/usr/lib/x86_64-linux-gnu"
DRIVER = "535.104.05"
SCRIPT = (f"strings /etc/ld.so.cache | grep libcuda; readlink {LIB}/libcuda.so; "
          "grep ModifyDeviceFiles /proc/driver/nvidia/params; ls /proc/driver/nvidia/gpus; "
          "echo 1 > /proc/driver/nvidia/params 2>/dev/null && echo writable || echo read-only")


@pytest.fixture
def host_driver(tmp_path: Path) -> tuple[Path, Path]:
    """(libcuda.so.<version>, host /proc/driver/nvidia) as a driver host would have them."""
    lib = build_shared_library(tmp_path / "driver" / f"libcuda.so.{DRIVER}", "libcuda.so.1")
    proc = tmp_path / "proc-driver-nvidia"
    (proc / "gpus" / "0000:07:00.0").mkdir(parents=True)
    (proc / "params").write_text("ModifyDeviceFiles: 1\n")
    (proc / "version").write_text(f"NVRM version: {DRIVER}\n")
    return lib, proc


@pytest.mark.parametrize("stage", ["createContainer", "createRuntime", "prestart"])
def test_a_container_sees_the_ld_cache_link_and_proc_driver(
        make_bundle: Callable[..., Bundle], make_runtime: Callable[..., Runtime],
        write_config: Callable[[str], Path], low_level: str,
        host_driver: tuple[Path, Path], stage: str) -> None:
    """createContainer runs in the container's mount namespace; createRuntime and prestart (as
    some CDI consumers register hooks) run in the runtime's, with the container's host pid:
    the hook enters the container's namespace first."""
    lib, proc = host_driver
    bundle = make_bundle(["/bin/sh", "-c", SCRIPT])

    def declare(spec: dict[str, Any]) -> None:
        spec["mounts"].append({"destination": f"{LIB}/{lib.name}", "source": str(lib),
                               "type": "bind", "options": ["ro", "nosuid", "nodev", "bind"]})
        spec["hooks"] = {stage: [{
            "path": HOOK,
            "args": ["gpu-container-spec-hook", "--folder", LIB,
                     "--link", f"libcuda.so.1::{LIB}/libcuda.so", "--driver-version", DRIVER,
                     "--proc-driver", str(proc), "--gpu", "00000000:07:00.0",
                     "--ldconfig", "/sbin/ldconfig", "--timeout", "9"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "timeout": 10}]}

    bundle.edit(declare)
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\n"), low_level)
    result = runtime.run(bundle, through_shim=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{LIB}/libcuda.so.1" in lines
    assert lines[-4:] == ["libcuda.so.1", "ModifyDeviceFiles: 0", "0000:07:00.0", "read-only"]
    assert (proc / "params").read_text() == "ModifyDeviceFiles: 1\n"


def test_a_failing_hook_stops_the_container_with_its_one_line(
        make_bundle: Callable[..., Bundle], make_runtime: Callable[..., Runtime],
        write_config: Callable[[str], Path], low_level: str, tmp_path: Path) -> None:
    """runc relays the hook's stderr in its error; crun writes it where the
    run.oci.hooks.stderr annotation says."""
    hook_stderr = tmp_path / "hook.stderr"
    bundle = make_bundle(["/bin/true"], annotations={"run.oci.hooks.stderr": str(hook_stderr)})
    bundle.edit(lambda spec: spec.update(hooks={"createContainer": [{
        "path": HOOK, "args": ["gpu-container-spec-hook", "--folder", LIB,
                               "--ldconfig", "/bin/ls"]}]}))
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\n"), low_level)
    result = runtime.run(bundle, through_shim=False)
    assert result.returncode != 0
    said = result.stderr if low_level == "runc" else hook_stderr.read_text()
    assert "gpu-container-spec-hook: ldconfig: /bin/ls: a dynamic executable" in said


@pytest.mark.parametrize("stage", ["createContainer", "createRuntime", "prestart"])
def test_a_proc_file_is_bound_read_only_from_any_stage(
        make_bundle: Callable[..., Bundle], make_runtime: Callable[..., Runtime],
        write_config: Callable[[str], Path], low_level: str,
        host_driver: tuple[Path, Path], stage: str) -> None:
    """``--proc-file``: the host's MIG capability file inside the container's tmpfs at the same
    path, read-only; from createRuntime/prestart too, where the host file is opened in the
    runtime's mount namespace and bound after the hook enters the container's."""
    _, proc = host_driver
    rel = "capabilities/gpu0/mig/gi3/ci0/access"
    (proc / rel).parent.mkdir(parents=True)
    (proc / rel).write_text("DeviceFileMinor: 31\nDeviceFileMode: 292\n")
    (proc / "capabilities" / "mig").mkdir()
    (proc / "capabilities" / "mig" / "monitor").write_text("DeviceFileMinor: 2\n")
    target = f"/proc/driver/nvidia/{rel}"
    bundle = make_bundle(["/bin/sh", "-c", f"find /proc/driver/nvidia/capabilities -type f; "
                          f"cat {target}; (echo 1 > {target}) 2>/dev/null && echo writable "
                          "|| echo read-only"])
    bundle.edit(lambda spec: spec.update(hooks={stage: [{
        "path": HOOK, "args": ["gpu-container-spec-hook", "--proc-driver", str(proc),
                               "--proc-file", rel], "timeout": 10}]}))
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\n"), low_level)
    result = runtime.run(bundle, through_shim=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [target, "DeviceFileMinor: 31", "DeviceFileMode: 292",
                                          "read-only"]
