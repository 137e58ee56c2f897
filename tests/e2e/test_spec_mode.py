"""Spec mode end to end (README §Spec mode): real runc and crun through the shim on the simulated
DGX A100 with ``mode: spec``, each container on an overlay rootfs so the image never changes.

The shim declares the device nodes and the driver files (read-only bind mounts the runtime
makes) and one createContainer entry of the lean hook, which gives the container its
/proc/driver/nvidia (ModifyDeviceFiles: 0), the link names and the ld cache. What the tests
show: a GPU container sees exactly its GPU, the libraries, ``nvidia-smi -L`` and an ld cache
naming libcuda.so.1; a retried create is not doubled; a container the engine already gave
NVIDIA devices (CDI) is not widened; CUDA forward compatibility; and images whose library
directory or /etc point at a host path write nothing outside their rootfs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import yaml
from containers import Bundle, Runtime, tree_digest
from engines import GPU_CTK, SYSTEM_PATH
from hostguard import mount_points
from spec_mode import (
    PROBE,
    SPEC_HOOK,
    SPEC_HOOK_NAME,
    assert_sees_one_gpu,
    config_document,
    first_path,
    ld_cache,
    nvidia_nodes,
)

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

DRIVER = "535.104.05"
LIBCUDA = f"libcuda.so.{DRIVER}"


def spec_shim(host: SimHost, make_runtime: MakeRuntime, write_config: WriteConfig,
              low_level: str = "runc", **sections: Any) -> Runtime:
    """A runtime whose shim runs the simulated host in spec mode over ``low_level``."""
    document = config_document(host, "spec", runtimes=[low_level], **sections)
    return make_runtime(write_config(yaml.safe_dump(document)), low_level)


def spec_hooks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every hook entry of ``spec`` that runs our lean hook, whatever its stage."""
    return [entry for entries in spec.get("hooks", {}).values() for entry in entries
            if Path(entry.get("path", "")).name == SPEC_HOOK_NAME]


def container_cache(bundle: Bundle) -> list[Any]:
    """The ld cache the container was left with (its overlay's upper layer)."""
    return ld_cache((bundle.path / "upper" / "etc" / "ld.so.cache").read_bytes())


def assert_one_line(stderr: str) -> None:
    """A refused start says why in one line: runc's (carrying our hook's line) or crun's own,
    or, when crun adds a line of its own, one line naming our hook (crun's ``error executing
    hook `.../gpu-container-spec-hook```)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    naming = [line for line in lines if SPEC_HOOK_NAME in line]
    assert len(lines) == 1 or len(naming) == 1, stderr


@pytest.mark.parametrize("mode", ["spec", "hook"])
def test_gpu_two_sees_its_node_the_driver_nvidia_smi_and_an_ld_cache(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, busybox_image: Path, low_level: str, mode: str) -> None:
    """NVIDIA_VISIBLE_DEVICES=2 (runc and crun, spec and hook mode): /dev/nvidia2 and no other
    GPU node, usable; libcuda.so.1 and libnvidia-ml.so.1; ``nvidia-smi -L`` naming GPU 2's
    UUID alone; /proc/driver/nvidia with ModifyDeviceFiles 0 and GPU 2's entry only; an ld
    cache resolving libcuda.so.1; and the image on the host unchanged."""
    host = sim_host_factory("dgx-a100")
    before = tree_digest(busybox_image)
    bundle = make_bundle(["/bin/sh", "-c", PROBE.format(minor=2)],
                         env=["NVIDIA_VISIBLE_DEVICES=2"])
    document = config_document(host, mode, runtimes=[low_level])
    runtime = make_runtime(write_config(yaml.safe_dump(document)), low_level)
    result = runtime.run(bundle)
    assert result.returncode in (0, 1), result.stderr  # head -c1 on the node fails: ENXIO
    assert_sees_one_gpu(result.stdout, result.stderr, host, 2)
    assert tree_digest(busybox_image) == before


def test_device_list_mount_request_gets_that_gpu_alone(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """A device plugin's request (/dev/null mounted onto /var/run/nvidia-container-devices/2)
    beside NVIDIA_VISIBLE_DEVICES=all from the image: the mount wins, and the container sees
    GPU 2 alone with its driver, nvidia-smi and ld cache."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/sh", "-c", PROBE.format(minor=2)],
                         env=["NVIDIA_VISIBLE_DEVICES=all"])
    bundle.edit(lambda spec: spec["mounts"].append(
        {"destination": "/var/run/nvidia-container-devices/2", "type": "bind",
         "source": "/dev/null", "options": ["rbind", "ro"]}))
    result = spec_shim(host, make_runtime, write_config).run(bundle)
    assert result.returncode in (0, 1), result.stderr
    assert_sees_one_gpu(result.stdout, result.stderr, host, 2)


def test_config_declares_read_only_driver_mounts_and_one_create_container_hook(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """The rewritten config.json: the driver library as a ro,nosuid,nodev bind mount at
    lib64 (no /etc/debian_version), nvidia-smi at /usr/bin, GPU 2's node, exactly one hook
    entry of ours (createContainer, the configured spec hook, an explicit env with PATH and
    nothing of the loader's or Python's) and no entry of the prestart hook."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=2"])
    result = spec_shim(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    spec = bundle.spec()
    mounts = {m["destination"]: m for m in spec["mounts"]}
    library = mounts[f"/usr/lib64/{LIBCUDA}"]
    assert library["source"] == str(host.driver_dir / "usr/lib/x86_64-linux-gnu" / LIBCUDA)
    assert library["type"] == "bind"
    assert {"ro", "nosuid", "nodev"} <= set(library["options"])
    assert "/usr/bin/nvidia-smi" in mounts
    assert "/dev/nvidia2" in [d["path"] for d in spec["linux"]["devices"]]
    [entry] = spec_hooks(spec)
    assert entry["path"] == SPEC_HOOK and entry["args"][0] == SPEC_HOOK_NAME
    assert entry in spec["hooks"]["createContainer"]
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in entry["env"]
    assert not [item for item in entry["env"] if item.startswith(("LD_", "PYTHON"))]
    assert isinstance(entry.get("timeout"), int) and entry["timeout"] > 0
    assert spec["hooks"] == {"createContainer": [entry]}


def test_retried_create_on_the_same_bundle_is_not_doubled(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """A second ``run`` of the bundle the shim already edited (an engine retrying a create):
    the container starts again, with each mount and our hook entry once, not read as a CDI
    injection (the driver mounts are ours)."""
    host = sim_host_factory("dgx-a100")
    runtime = spec_shim(host, make_runtime, write_config)
    bundle = make_bundle(["/bin/ls", "/dev/nvidia2", f"/usr/lib64/{LIBCUDA}"],
                         env=["NVIDIA_VISIBLE_DEVICES=2"])
    first = runtime.run(bundle)
    assert first.returncode == 0, first.stderr
    edited = bundle.spec()
    second = runtime.run(bundle)
    assert second.returncode == 0, second.stderr
    again = bundle.spec()
    destinations = [m["destination"] for m in again["mounts"]]
    assert len(destinations) == len(set(destinations)), destinations
    assert sorted(destinations) == sorted(m["destination"] for m in edited["mounts"])
    assert len(spec_hooks(again)) == 1
    assert [d["path"] for d in again["linux"]["devices"]] == \
        [d["path"] for d in edited["linux"]["devices"]]


def test_debian_image_gets_the_multiarch_library_directory(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """An image with /etc/debian_version gets the libraries in /usr/lib/x86_64-linux-gnu, and
    its ld cache resolves libcuda.so.1 there."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/ls", f"/usr/lib/x86_64-linux-gnu/{LIBCUDA}"],
                         env=["NVIDIA_VISIBLE_DEVICES=0"])
    (bundle.path / "rootfs" / "etc" / "debian_version").write_text("12.0\n")
    result = spec_shim(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert first_path(container_cache(bundle), "libcuda.so.1") == \
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1"


def test_mig_device_gets_its_parent_and_capability_nodes(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_VISIBLE_DEVICES=0:1 on the MIG host: the parent's node and the GI and CI
    capability nodes are inside and may be opened, and ``nvidia-smi -L`` lists the parent
    with that MIG device alone."""
    host = sim_host_factory("dgx-a100-mig")
    gpu = host.topology["gpus"][0]
    mig = gpu["mig"]["devices"][1]
    gi, ci = mig["gi_cap_minor"], mig["ci_cap_minor"]
    bundle = make_bundle(["/bin/sh", "-c", "ls /dev /dev/nvidia-caps; nvidia-smi -L; "
                          f"head -c1 /dev/nvidia-caps/nvidia-cap{gi}"],
                         env=["NVIDIA_VISIBLE_DEVICES=0:1"])
    result = spec_shim(host, make_runtime, write_config).run(bundle)
    assert result.returncode in (0, 1), result.stderr
    names = set(result.stdout.split())
    assert {"nvidia0", f"nvidia-cap{gi}", f"nvidia-cap{ci}"} <= names, result.stdout
    assert "nvidia1" not in names
    assert f"GPU 0: {gpu['name']} (UUID: {gpu['uuid']})" in result.stdout
    assert result.stdout.count("(UUID: MIG-") == 1 and f"(UUID: {mig['uuid']})" in result.stdout
    assert "Operation not permitted" not in result.stderr


LISTING = ("ls /usr/lib64 /usr/lib/x86_64-linux-gnu /usr/lib32 /usr/lib/i386-linux-gnu /usr/bin "
           "/dev /dev/nvidia-caps /run /var/run /tmp /lib/firmware 2>/dev/null; "
           "ls -R /proc/driver/nvidia 2>/dev/null; true")
"""Every name where either mode puts driver files, nodes or /proc/driver/nvidia entries."""


@pytest.mark.parametrize(("topology", "env", "debian"), [
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=1"], False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=1"], True),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_DRIVER_CAPABILITIES=utility"], False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_DRIVER_CAPABILITIES=compute"], False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_DRIVER_CAPABILITIES=all"], True),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_DRIVER_CAPABILITIES=graphics,display"],
     False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=0,3", "NVIDIA_DRIVER_CAPABILITIES=video,compat32"],
     True),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=2", "NVIDIA_DRIVER_CAPABILITIES=video"], False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=all"], False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=none"], False),
    ("dgx-a100", ["NVIDIA_VISIBLE_DEVICES=void"], False),
    ("dgx-a100", [], False),
    ("dgx-a100-mig", ["NVIDIA_VISIBLE_DEVICES=1"], False),
], ids=["gpu", "gpu-debian", "utility", "compute", "all-caps-debian", "graphics-display",
        "video-compat32-debian", "video", "all-gpus", "none", "void", "no-request",
        "mig-host-whole-gpu"])
def test_spec_mode_gives_the_names_hook_mode_gives(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, topology: str, env: list[str], debian: bool) -> None:
    """The same image and request in hook mode and in spec mode: the same driver files,
    binaries, link names, device nodes and /proc/driver/nvidia entries in the same places
    (spec mode chooses them exactly as libnvidia-container does for the hook); only the
    ``params`` file the lean hook writes may be new."""
    host = sim_host_factory(topology)
    seen = {}
    for mode in ("hook", "spec"):
        document = config_document(host, mode, runtimes=["runc"])
        runtime = make_runtime(write_config(yaml.safe_dump(document)))
        bundle = make_bundle(["/bin/sh", "-c", LISTING], env=env)
        if debian:
            (bundle.path / "rootfs" / "etc" / "debian_version").write_text("12.0\n")
        result = runtime.run(bundle)
        assert result.returncode == 0, f"{mode}: {result.stderr}"
        seen[mode] = set(result.stdout.split()) - {"params"}
    assert seen["spec"] == seen["hook"], (sorted(seen["hook"] - seen["spec"]),
                                          sorted(seen["spec"] - seen["hook"]))


# -- the shim's own NVML work: readiness, retry, requirements; the hook's failures ------------

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
    result = spec_shim(host, make_runtime, write_config, **FAST).run(bundle)
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
    result = spec_shim(host, make_runtime, write_config,
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
    result = spec_shim(host, make_runtime, write_config, **FAST).run(bundle)
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
    runtime = spec_shim(host, make_runtime, write_config)
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
    result = spec_shim(host, make_runtime, write_config, spec={"ldconfig": "/bin/ls"}).run(bundle)
    assert result.returncode != 0
    hook_lines = [line for line in result.stderr.split("\\n") if SPEC_HOOK_NAME + ": " in line]
    assert len(hook_lines) == 1, result.stderr
    assert hook_lines[0].endswith("gpu-container-spec-hook: ldconfig: /bin/ls: a dynamic "
                                  "executable (PT_INTERP); the host ldconfig must be static")


PRELOAD_SOURCE = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { (void)write(fd, "loaded\n", 7); close(fd); }
}
"""


def test_container_ld_preload_never_reaches_the_spec_hook(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path) -> None:
    """A container asking for LD_PRELOAD of a host library (CVE-2025-23266's shape) starts with
    its GPU and ld cache, and the library was never loaded into the root hook or its
    ldconfig: the hook entry carries its own explicit environment."""
    marker = tmp_path / "preloaded"
    source = tmp_path / "evil.c"
    source.write_text(PRELOAD_SOURCE)
    library = tmp_path / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library),
                    str(source)], check=True)
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(library)}, check=True)
    assert marker.read_text() == "loaded\n"  # the library works when it is preloaded
    marker.unlink()
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/ls", "/dev/nvidia2"],
                         env=["NVIDIA_VISIBLE_DEVICES=2", f"LD_PRELOAD={library}"])
    result = spec_shim(host, make_runtime, write_config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert first_path(container_cache(bundle), "libcuda.so.1") == "/usr/lib64/libcuda.so.1"
    assert not marker.exists()


# -- CUDA forward compatibility ---------------------------------------------------------------

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


@pytest.mark.parametrize(("compat", "first"), [
    ("550.54.15", "/usr/local/cuda/compat/libcuda.so.1"),
    ("999.1", "/usr/local/cuda/compat/libcuda.so.1"),
    ("535.999.01", "/usr/lib64/libcuda.so.1"),
    ("470.82.01", "/usr/lib64/libcuda.so.1"),
], ids=["newer-major", "much-newer-major", "same-major", "older-major"])
def test_compat_libcuda_goes_first_only_when_its_major_is_newer(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, tmp_path: Path, compat: str, first: str) -> None:
    """An image with /usr/local/cuda/compat/libcuda.so.<compat> on a 535 driver: the ld cache
    resolves libcuda.so.1 to the compat library when its major is newer than the driver's,
    to the driver's library otherwise."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=0"])
    compat_dir = bundle.path / "rootfs" / "usr" / "local" / "cuda" / "compat"
    compat_library(compat_dir, compat, tmp_path)
    result = spec_shim(host, make_runtime, write_config).run(bundle)
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
    result = spec_shim(host, make_runtime, write_config).run(bundle)
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
    result = spec_shim(host, make_runtime, write_config, low_level).run(bundle)
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
    result = spec_shim(host, make_runtime, write_config, low_level).run(bundle)
    assert tree_digest(outside) == before
    if result.returncode != 0:
        assert_one_line(result.stderr)


# -- beside CDI -------------------------------------------------------------------------------


def cdi_spec(config: Path) -> dict[str, Any]:
    """``gpu-ctk cdi generate --format json`` under shim configuration ``config``."""
    generated = subprocess.run([GPU_CTK, "cdi", "generate", "--format", "json"],
                               capture_output=True, text=True, timeout=60, check=True,
                               env={"PATH": SYSTEM_PATH, "GPU_CONTAINER_SHIM_CONFIG": str(config)})
    loaded: dict[str, Any] = json.loads(generated.stdout)
    return loaded


def inject(spec: dict[str, Any], cdi: dict[str, Any], device: str) -> None:
    """Apply the CDI spec's common edits and ``device``'s edits to ``spec`` as engines do
    (container-device-interface's ``ContainerEdits.Apply``): env, device nodes with an rw
    allow rule, bind mounts, hooks, and the ``cdi.k8s.io/`` annotation."""
    [chosen] = [d for d in cdi["devices"] if d["name"] == device]
    linux = spec.setdefault("linux", {})
    for edits in (cdi.get("containerEdits", {}), chosen["containerEdits"]):
        spec["process"]["env"] += edits.get("env", [])
        for node in edits.get("deviceNodes", []):
            linux.setdefault("devices", []).append(
                {"path": node["path"], "type": node.get("type", "c"), "major": node["major"],
                 "minor": node["minor"], "fileMode": 0o666, "uid": 0, "gid": 0})
            linux.setdefault("resources", {}).setdefault("devices", []).append(
                {"allow": True, "type": node.get("type", "c"), "major": node["major"],
                 "minor": node["minor"], "access": node.get("permissions", "rwm")})
        for mount in edits.get("mounts", []):
            spec["mounts"].append({"destination": mount["containerPath"],
                                   "source": mount["hostPath"], "type": mount.get("type", "bind"),
                                   "options": mount.get("options", [])})
        for hook in edits.get("hooks", []):
            entry = {k: hook[k] for k in ("path", "args", "env", "timeout") if k in hook}
            spec.setdefault("hooks", {}).setdefault(hook["hookName"], []).append(entry)
    spec.setdefault("annotations", {})[f"cdi.k8s.io/{cdi['kind'].replace('/', '_')}"] = \
        f"{cdi['kind']}={device}"


@pytest.mark.parametrize("visible", ["void", "all", "3"])
def test_cdi_injected_container_is_not_widened(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, low_level: str, visible: str) -> None:
    """A config.json carrying GPU 0 as an engine injects it from ``gpu-ctk cdi generate``'s
    spec, whatever NVIDIA_VISIBLE_DEVICES then says (runc and crun): the container has
    /dev/nvidia0 and no other GPU node, nvidia-smi lists GPU 0 alone, and the shim added no
    device, mount or hook of its own."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/sh", "-c", "ls -l /dev; nvidia-smi -L; head -c1 /dev/nvidia0"],
                         env=[f"NVIDIA_VISIBLE_DEVICES={visible}"])
    runtime = spec_shim(host, make_runtime, write_config, low_level)
    cdi = cdi_spec(runtime.config)
    bundle.edit(lambda spec: inject(spec, cdi, "0"))
    injected = bundle.spec()
    result = runtime.run(bundle)
    assert result.returncode in (0, 1), result.stderr
    gpus = {n for n in nvidia_nodes(result.stdout) if n[6:].isdigit()}
    assert gpus == {"nvidia0"}, result.stdout + result.stderr
    gpu = host.topology["gpus"][0]
    assert f"GPU 0: {gpu['name']} (UUID: {gpu['uuid']})" in result.stdout, result.stdout
    assert result.stdout.count("(UUID: GPU-") == 1
    assert "No such device or address" in result.stderr and \
        "Operation not permitted" not in result.stderr, result.stderr
    edited = bundle.spec()
    assert edited["linux"]["devices"] == injected["linux"]["devices"]
    assert edited["mounts"] == injected["mounts"]
    assert len(spec_hooks(edited)) == len(spec_hooks(injected))
    assert edited.get("hooks", {}).get("prestart", []) == \
        injected.get("hooks", {}).get("prestart", [])

