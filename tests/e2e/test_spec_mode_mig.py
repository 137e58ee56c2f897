"""A MIG container in spec mode (README §Spec mode): real runc and crun through the shim on the
simulated dgx-a100-mig host with ``mode: spec``. The runtime creates the capability nodes the
shim declares; the spec hook binds the matching files of /proc/driver/nvidia/capabilities into
its tmpfs (``--proc-file``), which CUDA and nvidia-smi read to find those nodes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import yaml
from containers import Bundle, Runtime

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

SPEC_HOOK = str(Path(sys.executable).parent / "gpu-container-spec-hook")
CAPS = "/proc/driver/nvidia/capabilities"
PROBE = (f"echo '== tree'; find {CAPS} -type f | sort; "
         "echo '== files'; for f in $(find {caps} -type f | sort); do cat $f; done; "
         "echo '== nodes'; ls /dev/nvidia-caps; "
         "echo '== smi'; nvidia-smi -L; "
         f"echo '== write'; (echo 1 > $(find {CAPS} -type f | head -n1)) 2>/dev/null "
         "&& echo writable || echo read-only").replace("{caps}", CAPS)


def spec_shim(host: SimHost, make_runtime: MakeRuntime, write_config: WriteConfig,
              low_level: str) -> Runtime:
    """The simulated host's configuration in spec mode, with this venv's spec hook."""
    document: dict[str, Any] = yaml.safe_load(host.config_path.read_text())
    document["mode"] = "spec"
    document.setdefault("spec", {})["hook_path"] = SPEC_HOOK
    document["runtimes"] = [low_level]
    return make_runtime(write_config(yaml.safe_dump(document)), low_level)


def sections(stdout: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line[3:]
            found[current] = []
        elif current:
            found[current].append(line)
    return found


def privileged(spec: dict[str, Any]) -> None:
    """CAP_SYS_ADMIN in every set, as a privileged engine container has it."""
    for name, caps in spec["process"]["capabilities"].items():
        spec["process"]["capabilities"][name] = [*caps, "CAP_SYS_ADMIN"]


@pytest.mark.parametrize("slot", [0, 3])
def test_a_mig_device_sees_its_access_files_nodes_and_nvidia_smi_listing(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, low_level: str, slot: int) -> None:
    """NVIDIA_VISIBLE_DEVICES=0:<slot>: exactly its GI and CI access files under
    /proc/driver/nvidia/capabilities (read-only, the host's text), its two nvidia-cap nodes,
    and ``nvidia-smi -L`` listing GPU 0 with this MIG device alone."""
    host = sim_host_factory("dgx-a100-mig")
    gpu = host.topology["gpus"][0]
    mig = gpu["mig"]["devices"][slot]
    gi, ci = mig["gi_cap_minor"], mig["ci_cap_minor"]
    bundle = make_bundle(["/bin/sh", "-c", PROBE], env=[f"NVIDIA_VISIBLE_DEVICES=0:{slot}"])
    result = spec_shim(host, make_runtime, write_config, low_level).run(bundle)
    assert result.returncode == 0, result.stderr
    seen = sections(result.stdout)
    base = f"{CAPS}/gpu{gpu['minor']}/mig/gi{mig['gi']}"
    assert seen["tree"] == [f"{base}/access", f"{base}/ci{mig['ci']}/access"], result.stdout
    host_proc = host.driver_dir / "proc" / "driver" / "nvidia" / "capabilities" / \
        f"gpu{gpu['minor']}" / "mig" / f"gi{mig['gi']}"
    assert "\n".join(seen["files"]) + "\n" == (host_proc / "access").read_text() + (
        host_proc / f"ci{mig['ci']}" / "access").read_text()
    assert f"DeviceFileMinor: {gi}" in seen["files"] and f"DeviceFileMinor: {ci}" in seen["files"]
    assert sorted(seen["nodes"]) == sorted([f"nvidia-cap{gi}", f"nvidia-cap{ci}"])
    assert seen["smi"][0].startswith("GPU 0: ") and gpu["uuid"] in seen["smi"][0]
    assert [line for line in seen["smi"] if "MIG" in line] == [
        f"  MIG {mig['profile']:<11} Device  0: (UUID: {mig['uuid']})"], result.stdout
    assert seen["write"] == ["read-only"]
    [entry] = bundle.spec()["hooks"]["createContainer"]
    args = entry["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--proc-file"] == [
        f"capabilities/gpu{gpu['minor']}/mig/gi{mig['gi']}/access",
        f"capabilities/gpu{gpu['minor']}/mig/gi{mig['gi']}/ci{mig['ci']}/access"]


def expected_tree(gpu: dict[str, Any], mig: dict[str, Any]) -> list[str]:
    base = f"{CAPS}/gpu{gpu['minor']}/mig/gi{mig['gi']}"
    return [f"{base}/access", f"{base}/ci{mig['ci']}/access"]


def test_two_mig_devices_on_two_gpus_by_uuid_see_both_and_only_theirs(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_VISIBLE_DEVICES=<MIG uuid on GPU 0>,<MIG uuid on GPU 1>: both devices' four
    files under their own gpu<minor>/, four nodes, and nvidia-smi -L lists both MIG devices."""
    host = sim_host_factory("dgx-a100-mig")
    gpus = host.topology["gpus"]
    picked = [(gpus[0], gpus[0]["mig"]["devices"][5]), (gpus[1], gpus[1]["mig"]["devices"][0])]
    bundle = make_bundle(["/bin/sh", "-c", PROBE], env=[
        "NVIDIA_VISIBLE_DEVICES=" + ",".join(mig["uuid"] for _, mig in picked)])
    result = spec_shim(host, make_runtime, write_config, "runc").run(bundle)
    assert result.returncode == 0, result.stderr
    seen = sections(result.stdout)
    assert seen["tree"] == sorted(path for gpu, mig in picked
                                  for path in expected_tree(gpu, mig)), result.stdout
    assert sorted(seen["nodes"]) == sorted(f"nvidia-cap{mig[key]}" for _, mig in picked
                                           for key in ("gi_cap_minor", "ci_cap_minor"))
    listed = "\n".join(seen["smi"])
    assert [line for line in seen["smi"] if "MIG" in line] == [
        f"  MIG {mig['profile']:<11} Device  0: (UUID: {mig['uuid']})" for _, mig in picked]
    assert gpus[0]["uuid"] in listed and gpus[1]["uuid"] in listed


def test_a_leased_profile_sees_the_files_of_the_instance_it_was_given(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb: the MIG lease rewrites the request to a concrete
    instance before spec mode declares it; that instance's files and nodes are inside."""
    host = sim_host_factory("dgx-a100-mig")
    gpu = host.topology["gpus"][1]
    bundle = make_bundle(["/bin/sh", "-c", PROBE], env=["NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb"])
    runtime = spec_shim(host, make_runtime, write_config, "runc")
    result = runtime.run(bundle)
    assert result.returncode == 0, result.stderr
    env = dict(e.split("=", 1) for e in bundle.spec()["process"]["env"])
    [mig] = [m for m in gpu["mig"]["devices"] if m["uuid"] == env["NVIDIA_VISIBLE_DEVICES"]]
    seen = sections(result.stdout)
    assert seen["tree"] == expected_tree(gpu, mig), result.stdout
    assert sorted(seen["nodes"]) == sorted([f"nvidia-cap{mig['gi_cap_minor']}",
                                            f"nvidia-cap{mig['ci_cap_minor']}"])
    assert f"(UUID: {mig['uuid']})" in "\n".join(seen["smi"])


def cap_minor_of(path: Path) -> str:
    return next(line.split()[1] for line in path.read_text().splitlines()
                if line.startswith("DeviceFileMinor"))


def test_a_privileged_mig_config_and_monitor_container_gets_the_global_files(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_MIG_CONFIG_DEVICES=all and NVIDIA_MIG_MONITOR_DEVICES=all in a privileged
    container with GPU 1 (in MIG mode) whole: capabilities/mig/config and mig/monitor, the
    host's text, and their two nodes; no MIG device's files."""
    host = sim_host_factory("dgx-a100-mig")
    bundle = make_bundle(["/bin/sh", "-c", PROBE],
                         env=["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_MIG_CONFIG_DEVICES=all",
                              "NVIDIA_MIG_MONITOR_DEVICES=all"])
    bundle.edit(privileged)
    result = spec_shim(host, make_runtime, write_config, "runc").run(bundle)
    assert result.returncode == 0, result.stderr
    seen = sections(result.stdout)
    assert seen["tree"] == [f"{CAPS}/mig/config", f"{CAPS}/mig/monitor"], result.stdout
    host_caps = host.driver_dir / "proc" / "driver" / "nvidia" / "capabilities" / "mig"
    assert "\n".join(seen["files"]) + "\n" == (host_caps / "config").read_text() + (
        host_caps / "monitor").read_text()
    assert sorted(seen["nodes"]) == sorted(f"nvidia-cap{cap_minor_of(host_caps / name)}"
                                           for name in ("config", "monitor"))
    assert seen["smi"][0].startswith("GPU 0: ") and host.topology["gpus"][1]["uuid"] in \
        seen["smi"][0]
