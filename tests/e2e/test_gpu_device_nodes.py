"""GPU device nodes through the shim on the simulated DGX A100: what the container sees and what
config.json declares (the devices modifier with real runc and crun)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from containers import Bundle, Runtime, sha256

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

NODE_LINE = re.compile(r"^c\S+\s+\d+\s+\S+\s+\S+\s+(\d+),\s+(\d+)\s+.*\s(\S+)$")


def shim_on(host: SimHost, make_runtime: MakeRuntime, write_config: WriteConfig,
            low_level: str) -> Runtime:
    return make_runtime(write_config(host.config_path.read_text()
                                     + f"\nruntimes: [{low_level}]\n"), low_level)


def test_gpu_by_uuid_sees_its_node_and_the_control_nodes_only(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig, low_level: str) -> None:
    """NVIDIA_VISIBLE_DEVICES=<UUID of GPU 3>: the container has /dev/nvidia3 (c 195:3),
    nvidiactl and the uvm nodes, no other /dev/nvidiaN, and the device cgroup lets it open
    them (ENXIO from the node-less driver, not EPERM)."""
    host = sim_host_factory("dgx-a100")
    uuid3 = host.topology["gpus"][3]["uuid"]
    bundle = make_bundle(["/bin/sh", "-c", "ls -l /dev; head -c1 /dev/nvidia3"],
                         env=[f"NVIDIA_VISIBLE_DEVICES={uuid3}"])
    result = shim_on(host, make_runtime, write_config, low_level).run(bundle)
    nodes = {m.group(3): (int(m.group(1)), int(m.group(2)))
             for m in map(NODE_LINE.match, result.stdout.splitlines()) if m}
    nvidia = {name: node for name, node in nodes.items() if name.startswith("nvidia")}
    assert nvidia == {"nvidia3": (195, 3), "nvidiactl": (195, 255), "nvidia-uvm": (510, 0),
                      "nvidia-uvm-tools": (510, 1)}, result.stderr
    assert "No such device or address" in result.stderr
    assert "Operation not permitted" not in result.stderr


def test_config_declares_each_node_and_allow_rule(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """The rewritten config.json lists each node in linux.devices with an rw allow rule."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=[f"NVIDIA_VISIBLE_DEVICES={host.topology['gpus'][3]['uuid']}"])
    result = shim_on(host, make_runtime, write_config, "runc").run(bundle)
    assert result.returncode == 0, result.stderr
    linux = bundle.spec()["linux"]
    wanted = [("/dev/nvidia3", 195, 3), ("/dev/nvidiactl", 195, 255),
              ("/dev/nvidia-uvm", 510, 0), ("/dev/nvidia-uvm-tools", 510, 1)]
    assert [(d["path"], d["major"], d["minor"]) for d in linux["devices"]
            if "nvidia" in d["path"]] == wanted
    assert [(r["major"], r["minor"], r["access"]) for r in linux["resources"]["devices"]
            if r.get("allow")] == [(major, minor, "rw") for _, major, minor in wanted]


def test_unknown_device_fails_in_one_line_and_leaves_config(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_VISIBLE_DEVICES=9 on an eight-GPU host: one `unknown device` line listing 0-7,
    non-zero exit, config.json byte for byte as it was."""
    host = sim_host_factory("dgx-a100")
    bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=9"])
    before = sha256(bundle.config_path)
    result = shim_on(host, make_runtime, write_config, "runc").run(bundle)
    assert result.returncode != 0
    assert result.stderr == ("gpu-container-runtime: request: unknown device 9; "
                             "this host has GPUs 0-7\n")
    assert sha256(bundle.config_path) == before


def test_all_on_a_mig_host_gives_every_mig_device(
        sim_host_factory: SimHostFactory, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        write_config: WriteConfig) -> None:
    """NVIDIA_VISIBLE_DEVICES=all on dgx-a100-mig (real runc, the hook mounting): every MIG
    device's GI and CI access nodes are inside, and nvidia-smi -L lists every MIG device."""
    host = sim_host_factory("dgx-a100-mig")
    bundle = make_bundle(["/bin/sh", "-c", "ls /dev/nvidia-caps; nvidia-smi -L"],
                         env=["NVIDIA_VISIBLE_DEVICES=all"], overlay=True)
    result = shim_on(host, make_runtime, write_config, "runc").run(bundle)
    assert result.returncode == 0, result.stderr
    migs = [d for gpu in host.topology["gpus"] for d in gpu["mig"]["devices"]]
    assert len(migs) == 9
    names = set(result.stdout.split())
    for device in migs:
        assert f"nvidia-cap{device['gi_cap_minor']}" in names, result.stdout
        assert f"nvidia-cap{device['ci_cap_minor']}" in names, result.stdout
        assert f"(UUID: {device['uuid']})" in result.stdout, result.stdout
    assert result.stdout.count("GPU-") == len(host.topology["gpus"])
    declared = {d["path"] for d in bundle.spec()["linux"]["devices"]}
    assert {f"/dev/nvidia-caps/nvidia-cap{d['ci_cap_minor']}" for d in migs} <= declared
