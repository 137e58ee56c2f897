"""The simulated libnvidia-ml.so.1 through the real pynvml (nvidia-ml-py), for every topology."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from typing import Any, Optional

import pytest
from pynvml_bound import nvml, text

TOPOLOGIES = ["t4", "dgx-a100", "dgx-a100-mig"]


def profile_names(pynvml: Any, gpu: Any) -> dict[int, str]:
    """Profile id -> name, through the profile-info call that takes the enum index."""
    names = {}
    for index in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(gpu, index)
        except pynvml.NVMLError_NotSupported:
            continue
        names[info.id] = text(info.name)
    return names


class TestIdentity:
    @pytest.mark.parametrize("name", TOPOLOGIES)
    def test_every_gpu_matches_the_topology(self, sim_host_factory: Any, name: str) -> None:
        """Count, name, UUID, bus id, minor, memory, brand and compute capability per GPU."""
        host = sim_host_factory(name)
        with nvml(host) as pynvml:
            assert pynvml.nvmlDeviceGetCount() == len(host.topology["gpus"])
            for gpu in host.topology["gpus"]:
                handle = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
                pci = pynvml.nvmlDeviceGetPciInfo(handle)
                major, minor = (int(part) for part in gpu["compute_capability"].split("."))
                assert (text(pynvml.nvmlDeviceGetName(handle)),
                        text(pynvml.nvmlDeviceGetUUID(handle)), text(pci.busId),
                        pynvml.nvmlDeviceGetMinorNumber(handle),
                        pynvml.nvmlDeviceGetMemoryInfo(handle).total,
                        pynvml.nvmlDeviceGetCudaComputeCapability(handle),
                        pynvml.nvmlDeviceGetIndex(handle)) == \
                    (gpu["name"], gpu["uuid"], gpu["bus_id"], gpu["minor"],
                     gpu["memory_mib"] << 20, (major, minor), gpu["index"])

    @pytest.mark.parametrize(("name", "brand", "arch"), [
        ("t4", 2, 6), ("dgx-a100", 14, 7),
    ])
    def test_brand_and_architecture(self, sim_host_factory: Any, name: str, brand: int,
                                    arch: int) -> None:
        """The T4 is NVML_BRAND_TESLA/Turing, the A100 NVML_BRAND_NVIDIA/Ampere."""
        with nvml(sim_host_factory(name)) as pynvml:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            assert (pynvml.nvmlDeviceGetBrand(handle),
                    pynvml.nvmlDeviceGetArchitecture(handle)) == (brand, arch)

    def test_versions(self, sim_host_factory: Any) -> None:
        """Driver 535.104.05, CUDA 12.2 as NVML's 12020, NVML version 12.535.104.05."""
        with nvml(sim_host_factory("t4")) as pynvml:
            assert (text(pynvml.nvmlSystemGetDriverVersion()),
                    pynvml.nvmlSystemGetCudaDriverVersion(),
                    pynvml.nvmlSystemGetCudaDriverVersion_v2(),
                    text(pynvml.nvmlSystemGetNVMLVersion())) == \
                ("535.104.05", 12020, 12020, "12.535.104.05")

    def test_legacy_bus_id_has_4_digit_domain(self, sim_host_factory: Any) -> None:
        """pciInfo.busIdLegacy and domain/bus/device carry the short form of the bus id."""
        with nvml(sim_host_factory("dgx-a100")) as pynvml:
            pci = pynvml.nvmlDeviceGetPciInfo(pynvml.nvmlDeviceGetHandleByIndex(1))
            assert (text(pci.busIdLegacy), pci.domain, pci.bus, pci.device,
                    pci.pciDeviceId) == ("0000:0F:00.0", 0, 0x0F, 0, 0x20B210DE)

    @pytest.mark.parametrize("bus_id", ["00000000:47:00.0", "0000:47:00.0", "47:00.0",
                                        "0000:47:00.0".lower()])
    def test_handle_by_bus_id(self, sim_host_factory: Any, bus_id: str) -> None:
        """Any spelling of a bus id NVML accepts finds the GPU."""
        with nvml(sim_host_factory("dgx-a100")) as pynvml:
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode())
            assert pynvml.nvmlDeviceGetIndex(handle) == 2

    def test_handle_by_uuid(self, sim_host_factory: Any) -> None:
        """A GPU UUID finds that GPU; an unknown one is NOT_FOUND."""
        host = sim_host_factory("dgx-a100")
        with nvml(host) as pynvml:
            uuid = host.topology["gpus"][5]["uuid"]
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
            assert pynvml.nvmlDeviceGetIndex(handle) == 5
            with pytest.raises(pynvml.NVMLError_NotFound):
                pynvml.nvmlDeviceGetHandleByUUID(b"GPU-00000000-0000-0000-0000-000000000000")

    def test_index_out_of_range(self, sim_host_factory: Any) -> None:
        """An index past the last GPU is INVALID_ARGUMENT, as NVML answers."""
        with nvml(sim_host_factory("t4")) as pynvml, \
                pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetHandleByIndex(1)

    def test_persistence_and_numa(self, sim_host_factory: Any) -> None:
        """Persistence mode is on; GPU 5 sits on node 1 whose CPUs are 64-127."""
        with nvml(sim_host_factory("dgx-a100")) as pynvml:
            handle = pynvml.nvmlDeviceGetHandleByIndex(5)
            mask = pynvml.nvmlDeviceGetCpuAffinity(handle, 2)
            assert (pynvml.nvmlDeviceGetPersistenceMode(handle),
                    pynvml.nvmlDeviceGetNumaNodeId(handle), mask[0], mask[1]) == \
                (1, 1, 0, 2**64 - 1)

    def test_t4_affinity_is_its_one_node(self, sim_host_factory: Any) -> None:
        """The T4 host's single node has CPUs 0-7."""
        with nvml(sim_host_factory("t4")) as pynvml:
            mask = pynvml.nvmlDeviceGetCpuAffinity(pynvml.nvmlDeviceGetHandleByIndex(0), 1)
            assert mask[0] == 0xFF


class TestMig:
    def test_mig_modes(self, sim_host_factory: Any) -> None:
        """GPUs 0 and 1 are in MIG mode with room for 7 devices; the others are not."""
        with nvml(sim_host_factory("dgx-a100-mig")) as pynvml:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(8)]
            assert [pynvml.nvmlDeviceGetMigMode(h) for h in handles] == \
                [[1, 1], [1, 1]] + [[0, 0]] * 6
            assert [pynvml.nvmlDeviceGetMaxMigDeviceCount(h) for h in handles] == \
                [7, 7] + [0] * 6

    def test_t4_has_no_mig(self, sim_host_factory: Any) -> None:
        """A T4 answers the MIG-mode query with NOT_SUPPORTED."""
        with nvml(sim_host_factory("t4")) as pynvml, \
                pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetMigMode(pynvml.nvmlDeviceGetHandleByIndex(0))

    @pytest.mark.parametrize(("gpu", "profiles"), [
        (0, ["MIG 1g.10gb"] * 7),
        (1, ["MIG 3g.40gb"] * 2),
    ])
    def test_mig_devices_by_index(self, sim_host_factory: Any, gpu: int,
                                  profiles: list[str]) -> None:
        """Walking MIG slots: each device's GPU instance maps through its profile id to the
        profile name; the remaining slots are NOT_FOUND."""
        host = sim_host_factory("dgx-a100-mig")
        expected = host.topology["gpus"][gpu]["mig"]["devices"]
        with nvml(host) as pynvml:
            parent = pynvml.nvmlDeviceGetHandleByIndex(gpu)
            names = profile_names(pynvml, parent)
            found: list[Optional[tuple[str, int, int, str]]] = []
            for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(parent)):
                try:
                    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
                except pynvml.NVMLError_NotFound:
                    found.append(None)
                    continue
                gi = pynvml.nvmlDeviceGetGpuInstanceId(mig)
                info = pynvml.nvmlGpuInstanceGetInfo(
                    pynvml.nvmlDeviceGetGpuInstanceById(parent, gi))
                found.append((text(pynvml.nvmlDeviceGetUUID(mig)), gi,
                              pynvml.nvmlDeviceGetComputeInstanceId(mig),
                              names[info.profileId]))
            assert found == [(d["uuid"], d["gi"], d["ci"], p)
                             for d, p in zip(expected, profiles)] + \
                [None] * (7 - len(profiles))

    def test_profile_index_is_not_the_id(self, sim_host_factory: Any) -> None:
        """Profile enum index 0 (1 slice) is id 19, index 2 (3 slices) is id 9."""
        with nvml(sim_host_factory("dgx-a100-mig")) as pynvml:
            parent = pynvml.nvmlDeviceGetHandleByIndex(0)
            one = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, 0)
            three = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, 2, version=1)
            assert (one.id, text(one.name), one.memorySizeMB, one.instanceCount) == \
                (19, "MIG 1g.10gb", 9728, 7)
            assert (three.id, three.sliceCount, three.memorySizeMB) == (9, 3, 40192)

    def test_mig_handle_relations(self, sim_host_factory: Any) -> None:
        """A MIG handle says it is one, leads to its parent, and has its own name, memory and
        attributes."""
        host = sim_host_factory("dgx-a100-mig")
        device = host.topology["gpus"][1]["mig"]["devices"][1]
        with nvml(host) as pynvml:
            mig = pynvml.nvmlDeviceGetHandleByUUID(device["uuid"].encode())
            parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            attributes = pynvml.nvmlDeviceGetAttributes(mig)
            assert (pynvml.nvmlDeviceIsMigDeviceHandle(mig).value,
                    pynvml.nvmlDeviceIsMigDeviceHandle(parent).value,
                    pynvml.nvmlDeviceGetIndex(parent),
                    text(pynvml.nvmlDeviceGetName(mig)),
                    pynvml.nvmlDeviceGetMemoryInfo(mig).total >> 20,
                    attributes.multiprocessorCount, attributes.gpuInstanceSliceCount,
                    pynvml.nvmlDeviceGetGpuInstanceId(mig)) == \
                (1, 0, 1, "NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40192, 42, 3, 2)

    def test_gpu_instance_placement(self, sim_host_factory: Any) -> None:
        """GI 1 of GPU 1 sits at memory slice 4 and spans 4 slices."""
        with nvml(sim_host_factory("dgx-a100-mig")) as pynvml:
            info = pynvml.nvmlGpuInstanceGetInfo(pynvml.nvmlDeviceGetGpuInstanceById(
                pynvml.nvmlDeviceGetHandleByIndex(1), 1))
            assert (info.id, info.profileId, info.placement.start, info.placement.size) == \
                (1, 9, 4, 4)

    def test_minor_of_a_mig_handle_is_not_supported(self, sim_host_factory: Any) -> None:
        """The minor belongs to the parent GPU: a MIG handle gets NOT_SUPPORTED (its index is
        its position in the parent: test_nvml_consumers)."""
        with nvml(sim_host_factory("dgx-a100-mig")) as pynvml:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(
                pynvml.nvmlDeviceGetHandleByIndex(0), 0)
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlDeviceGetMinorNumber(mig)


class TestFaults:
    def test_nvml_not_ready_misses_the_first_lookups(self, sim_host_factory: Any) -> None:
        """nvml-not-ready=2: two UUID lookups miss, the third finds the GPU."""
        host = sim_host_factory("t4", faults=["nvml-not-ready=2"])
        uuid = host.topology["gpus"][0]["uuid"].encode()
        with nvml(host) as pynvml:
            outcomes = []
            for _ in range(3):
                try:
                    pynvml.nvmlDeviceGetHandleByUUID(uuid)
                    outcomes.append("found")
                except pynvml.NVMLError_NotFound:
                    outcomes.append("missing")
            assert outcomes == ["missing", "missing", "found"]

    def test_nvml_unknown_error_fails_the_first_device_counts(self,
                                                              sim_host_factory: Any) -> None:
        """nvml-unknown-error=2: two device counts fail with NVML's Unknown Error (999)."""
        host = sim_host_factory("t4", faults=["nvml-unknown-error=2"])
        with nvml(host) as pynvml:
            outcomes = []
            for _ in range(3):
                try:
                    outcomes.append(pynvml.nvmlDeviceGetCount())
                except pynvml.NVMLError_Unknown:
                    outcomes.append("unknown")
            assert outcomes == ["unknown", "unknown", 1]

    def test_nvml_not_ready_counts_across_processes(self, sim_host_factory: Any) -> None:
        """The uses are counted in DIR, so a second process continues the first's count."""
        host = sim_host_factory("t4", faults=["nvml-not-ready=2"])
        with nvml(host) as pynvml, pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetHandleByUUID(host.topology["gpus"][0]["uuid"].encode())
        script = ("import pynvml; pynvml.nvmlInit(); "
                  f"pynvml.nvmlDeviceGetHandleByUUID({host.topology['gpus'][0]['uuid']!r})")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env={**os.environ, "LD_LIBRARY_PATH": str(host.lib_dir)},
                                check=False)
        assert "Not Found" in result.stderr and host.fault_uses("nvml-not-ready") == 2

    def test_nvml_not_ready_also_hides_mig_devices(self, sim_host_factory: Any) -> None:
        """MIG UUID lookups count against the same fault."""
        host = sim_host_factory("dgx-a100-mig", faults=["nvml-not-ready=1"])
        uuid = host.topology["gpus"][0]["mig"]["devices"][3]["uuid"].encode()
        with nvml(host) as pynvml:
            with pytest.raises(pynvml.NVMLError_NotFound):
                pynvml.nvmlDeviceGetHandleByUUID(uuid)
            assert pynvml.nvmlDeviceIsMigDeviceHandle(
                pynvml.nvmlDeviceGetHandleByUUID(uuid)).value == 1

    def test_gpu_lost_on_lookup(self, sim_host_factory: Any) -> None:
        """gpu-lost=1: GPU 1 is GPU_IS_LOST by index and by UUID; GPU 0 still answers."""
        host = sim_host_factory("dgx-a100", faults=["gpu-lost=1"])
        with nvml(host) as pynvml:
            pynvml.nvmlDeviceGetHandleByIndex(0)
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                pynvml.nvmlDeviceGetHandleByIndex(1)
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                pynvml.nvmlDeviceGetHandleByUUID(host.topology["gpus"][1]["uuid"].encode())

    def test_gpu_lost_while_holding_a_handle(self, sim_host_factory: Any) -> None:
        """A fault set after the handle was taken applies to the next query at once."""
        host = sim_host_factory("dgx-a100-mig")
        with nvml(host) as pynvml:
            gpu = pynvml.nvmlDeviceGetHandleByIndex(0)
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, 0)
            host.set_faults("gpu-lost=0")
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                pynvml.nvmlDeviceGetMemoryInfo(gpu)
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                pynvml.nvmlDeviceGetUUID(mig)

    @pytest.mark.parametrize(("code", "message"), [
        (1, "Uninitialized"), (6, "Not Found"), (9, "Driver Not Loaded"), (15, "GPU is lost"),
        (16, "GPU requires restart"), (12345, "Unknown Error"),
    ])
    def test_error_strings(self, sim_host_factory: Any, code: int, message: str) -> None:
        """nvmlErrorString gives NVML's text for each code."""
        with nvml(sim_host_factory("t4")) as pynvml:
            assert text(pynvml.nvmlErrorString(code)) == message


class TestRelocation:
    def test_each_directory_reads_its_own_faults(self, sim_host_factory: Any) -> None:
        """Two hosts of one topology share a compile but each library reads its own DIR."""
        lost = sim_host_factory("t4", faults=["gpu-lost=0"])
        healthy = sim_host_factory("t4")
        with nvml(lost) as pynvml, pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlDeviceGetHandleByIndex(0)
        with nvml(healthy) as pynvml:
            pynvml.nvmlDeviceGetHandleByIndex(0)


class TestLifecycle:
    def test_calls_before_init_are_uninitialized(self, sim_host_factory: Any) -> None:
        """Without nvmlInit, queries return NVML_ERROR_UNINITIALIZED (1)."""
        library = ctypes.CDLL(str(sim_host_factory("t4").nvml_library))
        count = ctypes.c_uint()
        assert library.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 1

    def test_shutdown_balances_init(self, sim_host_factory: Any) -> None:
        """Two inits need two shutdowns; a third shutdown is UNINITIALIZED."""
        library = ctypes.CDLL(str(sim_host_factory("t4").nvml_library))
        assert [library.nvmlInit_v2(), library.nvmlInitWithFlags(0), library.nvmlShutdown(),
                library.nvmlShutdown(), library.nvmlShutdown()] == [0, 0, 0, 0, 1]


def test_ld_library_path_finds_the_simulated_library(sim_host_factory: Any) -> None:
    """The acceptance check: plain pynvml with LD_LIBRARY_PATH=DIR/lib sees 8 GPUs, GPU 0 with
    seven 1g.10gb MIG devices and GPU 1 with two 3g.40gb."""
    host = sim_host_factory("dgx-a100-mig")
    script = """
import json, pynvml
pynvml.nvmlInit()
out = []
for i in range(pynvml.nvmlDeviceGetCount()):
    gpu = pynvml.nvmlDeviceGetHandleByIndex(i)
    names = {}
    for index in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(gpu, index)
            names[info.id] = info.name.decode() if isinstance(info.name, bytes) else info.name
        except pynvml.NVMLError_NotSupported:
            pass
    profiles = []
    mode = pynvml.nvmlDeviceGetMigMode(gpu)[0]
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(gpu)):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot)
        except pynvml.NVMLError_NotFound:
            continue
        gi = pynvml.nvmlDeviceGetGpuInstanceById(gpu, pynvml.nvmlDeviceGetGpuInstanceId(mig))
        profiles.append(names[pynvml.nvmlGpuInstanceGetInfo(gi).profileId])
    out.append([mode, profiles])
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "LD_LIBRARY_PATH": str(host.lib_dir)},
                            check=True)
    assert json.loads(result.stdout) == [[1, ["MIG 1g.10gb"] * 7], [1, ["MIG 3g.40gb"] * 2]] + \
        [[0, []]] * 6
