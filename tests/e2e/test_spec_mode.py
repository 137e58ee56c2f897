"""Spec mode end to end (README §Spec mode): real runc and crun through the shim on the simulated
DGX A100 with ``mode: spec``, each container on an overlay rootfs so the image never changes.

The shim declares the device nodes and the driver files (read-only bind mounts the runtime
makes) and one createContainer entry of the lean hook, which gives the container its
/proc/driver/nvidia (ModifyDeviceFiles: 0), the link names and the ld cache. What the tests
show: a GPU container sees exactly its GPU, the libraries, ``nvidia-smi -L`` and an ld cache
naming libcuda.so.1; the config.json the shim writes; a retried create is not doubled; the
image layouts and MIG; and, request by request, the same names as hook mode. The shim's own
NVML work and the failures are in test_spec_mode_failures.py, images aiming at the host and
CUDA forward compatibility in test_spec_mode_images.py, CDI injection in test_spec_mode_cdi.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import yaml
from containers import Bundle, Runtime, tree_digest
from spec_mode import (
    PROBE,
    SPEC_HOOK,
    SPEC_HOOK_NAME,
    assert_sees_one_gpu,
    config_document,
    container_cache,
    first_path,
    spec_hooks,
    spec_runtime,
)

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

LIBCUDA = "libcuda.so.535.104.05"


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
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
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
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
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
    runtime = spec_runtime(host, make_runtime, write_config)
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
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
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
    result = spec_runtime(host, make_runtime, write_config).run(bundle)
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
    ("dgx-a100-mig", ["NVIDIA_VISIBLE_DEVICES=0:1"], False),
    ("dgx-a100-mig", ["NVIDIA_VISIBLE_DEVICES=all"], True),
], ids=["gpu", "gpu-debian", "utility", "compute", "all-caps-debian", "graphics-display",
        "video-compat32-debian", "video", "all-gpus", "none", "void", "no-request",
        "mig-host-whole-gpu", "mig", "mig-all-debian"])
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


@pytest.mark.parametrize("mode", ["spec", "hook"])
def test_a_read_only_rootfs_still_gets_its_gpu_the_driver_and_an_ld_cache(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, low_level: str, mode: str) -> None:
    """``root.readonly`` (runc and crun, both modes): the hook's links and ld cache are made
    before the runtime makes the root read-only, and the container sees GPU 2 as any other."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/sh", "-c", PROBE.format(minor=2)],
                         env=["NVIDIA_VISIBLE_DEVICES=2"])
    bundle.edit(lambda spec: spec["root"].update(readonly=True))
    document = config_document(host, mode, runtimes=[low_level])
    runtime = make_runtime(write_config(yaml.safe_dump(document)), low_level)
    result = runtime.run(bundle)
    assert result.returncode in (0, 1), result.stderr
    assert_sees_one_gpu(result.stdout, result.stderr, host, 2)


def test_a_read_only_rootfs_stays_read_only_for_the_container(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, low_level: str) -> None:
    """The spec hook writes the links and the ld cache through a view of its own; the
    container's root stays read-only (runc and crun)."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(["/bin/sh", "-c", "ls /usr/lib64/libcuda.so.1 && "
                          "(touch /written 2>/dev/null && echo writable || echo read-only)"],
                         env=["NVIDIA_VISIBLE_DEVICES=2"])
    bundle.edit(lambda spec: spec["root"].update(readonly=True))
    document = config_document(host, "spec", runtimes=[low_level])
    result = make_runtime(write_config(yaml.safe_dump(document)), low_level).run(bundle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "read-only", result.stdout + result.stderr
