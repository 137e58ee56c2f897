"""GPU discovery: library loading and the real simulated hosts."""

from __future__ import annotations

import ctypes.util
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from gpu_core import config
from gpu_core.discovery import discover, discover_from_config
from gpu_core.errors import ShimError
from gpu_core.inventory import DeviceNode, Gpu, Inventory, MigDevice

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]


def test_missing_library_is_discovery_error(tmp_path: Path) -> None:
    """A configured NVML library that cannot be loaded is named in a discovery error."""
    missing = tmp_path / "libnvidia-ml.so.1"
    with pytest.raises(ShimError) as caught:
        discover(str(missing), str(tmp_path), str(tmp_path), str(tmp_path))
    assert caught.value.stage == "discovery"
    assert caught.value.cause.startswith(f"nvml: cannot load {missing}: ")


def test_library_without_nvml_is_discovery_error(tmp_path: Path) -> None:
    """A library lacking NVML's entry points fails naming the call that could not run."""
    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(ShimError) as caught:
        discover(libc, str(tmp_path), str(tmp_path), str(tmp_path))
    assert str(caught.value) == "discovery: nvml: Function Not Found (nvmlInitWithFlags)"


# --- the simulated hosts -------------------------------------------------------------------------

MIB = 1024 ** 2


def discover_host(host: SimHost) -> Inventory:
    return discover_from_config(config.parse(host.config_path.read_text(), str(host.config_path)))


@pytest.fixture
def mig_host(sim_host_factory: SimHostFactory) -> tuple[SimHost, Inventory]:
    """A freshly built dgx-a100-mig host (the factory resets it) and its inventory."""
    host = sim_host_factory("dgx-a100-mig")
    return host, discover_host(host)


def test_t4_gpu_fields_match_topology(sim_host_factory: SimHostFactory) -> None:
    """The T4 host's single GPU reads back with every field the topology gave it."""
    host = sim_host_factory("t4")
    inventory = discover_host(host)
    want = host.topology["gpus"][0]
    assert inventory.gpus == (Gpu(
        index=0, uuid=want["uuid"], minor=want["minor"], bus_id=want["bus_id"],
        name="Tesla T4", brand="Tesla", cc="7.5", memory_bytes=want["memory_mib"] * MIB,
        mig_mode=False, mig_devices=(), numa_node=want["numa_node"]),)


def test_driver_and_cuda_versions(sim_host_factory: SimHostFactory) -> None:
    """Driver version is NVML's string; the CUDA version is NVML's integer as major.minor."""
    host = sim_host_factory("t4")
    inventory = discover_host(host)
    assert (inventory.driver_version, inventory.cuda_version) == (
        host.topology["driver_version"], host.topology["cuda_version"])


def test_dgx_a100_gpus_in_index_order(sim_host_factory: SimHostFactory) -> None:
    """All eight GPUs come back in index order with their UUIDs, bus ids and NUMA nodes."""
    host = sim_host_factory("dgx-a100")
    inventory = discover_host(host)
    assert [(g.index, g.uuid, g.bus_id, g.numa_node, g.minor) for g in inventory.gpus] == [
        (g["index"], g["uuid"], g["bus_id"], g["numa_node"], g["minor"])
        for g in host.topology["gpus"]]
    assert {(g.brand, g.cc, g.mig_mode) for g in inventory.gpus} == {("Nvidia", "8.0", False)}


def test_mig_devices_match_topology(mig_host: tuple[SimHost, Inventory]) -> None:
    """Each MIG device has its UUID, instance ids, profile name and id, memory, caps minors and
    slot as the topology defines them."""
    host, inventory = mig_host
    for gpu, want in zip(inventory.gpus, host.topology["gpus"]):
        expected = tuple(MigDevice(
            uuid=m["uuid"], parent_uuid=want["uuid"], parent_index=want["index"],
            gi_id=m["gi"], ci_id=m["ci"], profile=m["profile"], profile_id=m["profile_id"],
            memory_mib=m["memory_mib"], gi_cap_minor=m["gi_cap_minor"],
            ci_cap_minor=m["ci_cap_minor"], index=m["index"])
            for m in want.get("mig", {}).get("devices", []))
        assert (gpu.mig_mode, gpu.mig_devices) == (bool(expected), expected)


def test_profile_names_come_from_profile_id_not_enum_index(
        mig_host: tuple[SimHost, Inventory]) -> None:
    """3g.40gb has profile id 9, which is the enum index of 1g.20gb: the name must still be
    3g.40gb."""
    _, inventory = mig_host
    assert {(m.profile, m.profile_id) for m in inventory.gpus[1].mig_devices} == {("3g.40gb", 9)}


def test_mig_cap_nodes_are_the_caps_devices(mig_host: tuple[SimHost, Inventory]) -> None:
    """Every MIG device's GI and CI cap minors have an nvidia-caps node with the host's
    major, mode and owner."""
    host, inventory = mig_host
    for mig in (m for g in inventory.gpus for m in g.mig_devices):
        for minor in (mig.gi_cap_minor, mig.ci_cap_minor):
            assert minor is not None
            node = inventory.cap_nodes[minor]
            info = os.stat(host.dev_dir / "nvidia-caps" / f"nvidia-cap{minor}")
            assert node == DeviceNode(
                path=f"/dev/nvidia-caps/nvidia-cap{minor}",
                host_path=str(host.dev_dir / "nvidia-caps" / f"nvidia-cap{minor}"),
                major=os.major(info.st_rdev), minor=minor, file_mode=stat.S_IMODE(info.st_mode),
                uid=info.st_uid, gid=info.st_gid)
            assert node.major == 509


def test_global_mig_caps(mig_host: tuple[SimHost, Inventory]) -> None:
    """The MIG config and monitor capabilities are minors 1 and 2."""
    _, inventory = mig_host
    assert dict(inventory.mig_global_caps) == {"config": 1, "monitor": 2}


def test_gpu_and_control_nodes(mig_host: tuple[SimHost, Inventory]) -> None:
    """GPU nodes are 195:minor, control nodes are nvidiactl, the two uvm nodes (major from the
    host) and modeset, each with the host node's mode and owner."""
    host, inventory = mig_host
    assert {m: (n.path, n.major, n.minor) for m, n in inventory.gpu_nodes.items()} == {
        m: (f"/dev/nvidia{m}", 195, m) for m in range(8)}
    assert [(n.path, n.major, n.minor) for n in inventory.control_nodes] == [
        ("/dev/nvidiactl", 195, 255), ("/dev/nvidia-uvm", 510, 0),
        ("/dev/nvidia-uvm-tools", 510, 1), ("/dev/nvidia-modeset", 195, 254)]
    info = os.stat(host.dev_dir / "nvidia3")
    assert (inventory.gpu_nodes[3].file_mode, inventory.gpu_nodes[3].uid,
            inventory.gpu_nodes[3].gid) == (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)


def test_missing_cap_node_is_described_as_nvidia_modprobe_would_create_it(
        sim_host_factory: SimHostFactory) -> None:
    """A caps node not yet created gets the nvidia-caps major from /proc/devices and the mode
    from its capability file, owned by root."""
    host = sim_host_factory("dgx-a100-mig")
    minor = host.topology["gpus"][1]["mig"]["devices"][0]["gi_cap_minor"]
    (host.dev_dir / "nvidia-caps" / f"nvidia-cap{minor}").unlink()
    node = discover_host(host).cap_nodes[minor]
    assert (node.major, node.minor, node.file_mode, node.uid, node.gid) == (509, minor, 0o444,
                                                                            0, 0)


def test_missing_gpu_node_is_left_out(sim_host_factory: SimHostFactory) -> None:
    """A GPU whose /dev node is absent has no gpu_nodes entry; the others are there."""
    host = sim_host_factory("dgx-a100")
    (host.dev_dir / "nvidia5").unlink()
    assert sorted(discover_host(host).gpu_nodes) == [0, 1, 2, 3, 4, 6, 7]


def test_lost_gpu_is_discovery_error_naming_it(sim_host_factory: SimHostFactory) -> None:
    """With GPU 2 lost, discovery fails with NVML's message, the call and the GPU, and NVML is
    shut down again."""
    from gpu_core.nvml_lib import open_nvml

    host = sim_host_factory("dgx-a100", faults=["gpu-lost=2"])
    with pytest.raises(ShimError) as caught:
        discover_host(host)
    assert str(caught.value) == ("discovery: nvml: GPU is lost "
                                 "(nvmlDeviceGetHandleByIndex_v2 gpu 2)")
    assert open_nvml(str(host.nvml_library)).references == 0


def test_two_hosts_in_one_process_each_see_their_own_library(
        sim_host_factory: SimHostFactory) -> None:
    """Discovering one host after another reads the second host's library, then the first's."""
    t4 = discover_host(sim_host_factory("t4"))
    dgx = discover_host(sim_host_factory("dgx-a100"))
    again = discover_host(sim_host_factory("t4"))
    assert (len(t4.gpus), len(dgx.gpus), len(again.gpus)) == (1, 8, 1)


def test_nvml_held_initialises_the_driver_once_for_discovery_and_readiness(
        sim_host_factory: SimHostFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside nvml_held, discovery and the readiness probe only take references: NVML's driver
    set-up (the init that finds the count at zero) happens once, and all are released after."""
    from gpu_core.nvml_lib import Nvml, open_nvml
    from gpu_core.nvml_query import nvml_held
    from gpu_core.readiness import NvmlProbe

    host = sim_host_factory("t4")
    nvml = open_nvml(str(host.nvml_library))
    first_inits: list[int] = []
    real_init = Nvml.init

    def counting_init(self: Nvml, flags: int = 0) -> None:
        if self.references == 0:
            first_inits.append(flags)
        real_init(self, flags)

    monkeypatch.setattr(Nvml, "init", counting_init)
    with nvml_held(str(host.nvml_library)):
        inventory = discover_host(host)
        with NvmlProbe(str(host.nvml_library)) as probe:
            assert probe([inventory.gpus[0].uuid])[inventory.gpus[0].uuid].ready
    assert len(first_inits) == 1
    assert nvml.references == 0
