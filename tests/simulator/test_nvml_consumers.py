"""The simulated NVML against what real consumers resolve for discovery and MIG, not only what
our code calls: nvidia-ml-py (pynvml) and the go-nvml bindings of NVIDIA Container Toolkit
(the symbols its nvidia-container-runtime binds in jit-cdi mode for a GPU, ``all`` and a MIG
device: README, "NVIDIA Container Toolkit beside us")."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from pynvml_bound import nvml, text

# Bound by nvidia-container-runtime v1.20.0 (jit-cdi) creating containers with GPU 2, `all`,
# a MIG index and a MIG UUID on dgx-a100-mig (LD_DEBUG=bindings).
NCT_SYMBOLS = (
    "nvmlInit_v2", "nvmlInitWithFlags", "nvmlShutdown", "nvmlSystemGetDriverVersion",
    "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetHandleByPciBusId_v2", "nvmlDeviceGetIndex", "nvmlDeviceGetUUID",
    "nvmlDeviceGetName", "nvmlDeviceGetMinorNumber", "nvmlDeviceGetPciInfo_v2",
    "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceIsMigDeviceHandle", "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetGpuInstanceId", "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetAttributes_v2", "nvmlDeviceGetGpuInstanceProfileInfo",
    "nvmlDeviceGetGpuInstanceById", "nvmlGpuInstanceGetInfo",
    "nvmlGpuInstanceGetComputeInstanceById", "nvmlGpuInstanceGetComputeInstanceProfileInfo",
    "nvmlComputeInstanceGetInfo_v2",
)

# What pynvml's discovery and MIG wrappers look up (nvmlInit, nvmlDeviceGetCount, ... map to
# the versioned names; the profile-info wrappers take the V entry points by default).
PYNVML_SYMBOLS = (
    "nvmlInitWithFlags", "nvmlShutdown", "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion", "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2", "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetHandleByPciBusId_v2", "nvmlDeviceGetIndex", "nvmlDeviceGetUUID",
    "nvmlDeviceGetName", "nvmlDeviceGetMinorNumber", "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceIsMigDeviceHandle", "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetGpuInstanceId", "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetAttributes_v2", "nvmlDeviceGetGpuInstanceProfileInfo",
    "nvmlDeviceGetGpuInstanceProfileInfoV", "nvmlDeviceGetGpuInstances",
    "nvmlDeviceGetGpuInstanceById", "nvmlGpuInstanceGetInfo",
    "nvmlGpuInstanceGetComputeInstanceProfileInfo",
    "nvmlGpuInstanceGetComputeInstanceProfileInfoV", "nvmlGpuInstanceGetComputeInstances",
    "nvmlGpuInstanceGetComputeInstanceById", "nvmlComputeInstanceGetInfo_v2",
)


@pytest.mark.parametrize("symbol", sorted(set(NCT_SYMBOLS) | set(PYNVML_SYMBOLS)))
def test_consumer_symbol_is_exported(sim_host_factory: Any, symbol: str) -> None:
    host = sim_host_factory("dgx-a100-mig")
    library = ctypes.CDLL(str(host.nvml_library))
    assert hasattr(library, symbol)


def test_driver_tree_nvml_is_the_simulated_nvml(sim_host_factory: Any) -> None:
    """DIR/driver's libnvidia-ml.so.1 (what a tool given DIR/driver as its root loads) answers
    like DIR/lib's: same GPU count."""
    host = sim_host_factory("dgx-a100-mig")
    library = ctypes.CDLL(str(host.driver_dir / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"))
    count = ctypes.c_uint()
    assert library.nvmlInit_v2() == 0
    assert library.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
    library.nvmlShutdown()
    assert count.value == len(host.topology["gpus"])


def mig_devices(pynvml: Any, gpu: Any) -> list[Any]:
    handles = []
    for index in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(gpu)):
        try:
            handles.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, index))
        except pynvml.NVMLError_NotFound:
            continue
    return handles


class TestMigHandles:
    def test_index_of_a_mig_handle_is_its_position_in_its_parent(
            self, sim_host_factory: Any) -> None:
        host = sim_host_factory("dgx-a100-mig")
        with nvml(host) as pynvml:
            for gpu in host.topology["gpus"]:
                parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
                if not gpu["mig"]["devices"]:
                    continue
                indices = [pynvml.nvmlDeviceGetIndex(handle)
                           for handle in mig_devices(pynvml, parent)]
                assert indices == list(range(len(gpu["mig"]["devices"])))

    def test_index_of_a_mig_handle_found_by_uuid(self, sim_host_factory: Any) -> None:
        host = sim_host_factory("dgx-a100-mig")
        gpu = next(g for g in host.topology["gpus"] if len(g["mig"]["devices"]) > 1)
        last = len(gpu["mig"]["devices"]) - 1
        with nvml(host) as pynvml:
            handle = pynvml.nvmlDeviceGetHandleByUUID(gpu["mig"]["devices"][last]["uuid"])
            assert pynvml.nvmlDeviceGetIndex(handle) == last


def ci_profile_of_each_device(pynvml: Any, parent: Any, version: int) -> list[Any]:
    """go-nvlib's MigDevice.GetProfile walk: for each MIG device, the compute-instance profile
    info whose id matches its compute instance's profileId."""
    found = []
    for mig in mig_devices(pynvml, parent):
        gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, pynvml.nvmlDeviceGetGpuInstanceId(mig))
        ci = pynvml.nvmlGpuInstanceGetComputeInstanceById(
            gi, pynvml.nvmlDeviceGetComputeInstanceId(mig))
        wanted = pynvml.nvmlComputeInstanceGetInfo(ci).profileId
        matches = []
        for profile in range(pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            try:
                info = pynvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi, profile, pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, version)
            except pynvml.NVMLError_NotSupported:
                continue
            if info.id == wanted:
                matches.append(info)
        found.append(matches)
    return found


class TestComputeInstanceProfiles:
    @pytest.mark.parametrize("version", [1, 2])
    def test_every_mig_device_has_exactly_one_matching_profile(
            self, sim_host_factory: Any, version: int) -> None:
        host = sim_host_factory("dgx-a100-mig")
        with nvml(host) as pynvml:
            for gpu in host.topology["gpus"]:
                parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
                profiles = ci_profile_of_each_device(pynvml, parent, version)
                slices = [[info.sliceCount for info in matches] for matches in profiles]
                assert slices == [[d["slice_count"]] for d in gpu["mig"]["devices"]]

    def test_whole_instance_profile_is_named_after_the_gpu_instance(
            self, sim_host_factory: Any) -> None:
        host = sim_host_factory("dgx-a100-mig")
        with nvml(host) as pynvml:
            for gpu in host.topology["gpus"]:
                parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
                names = [text(matches[0].name)
                         for matches in ci_profile_of_each_device(pynvml, parent, 2)]
                assert names == [f"MIG {d['profile']}" for d in gpu["mig"]["devices"]]

    def test_profiles_larger_than_the_instance_are_not_supported(
            self, sim_host_factory: Any) -> None:
        host = sim_host_factory("dgx-a100-mig")
        gpu = next(g for g in host.topology["gpus"]
                   if any(d["slice_count"] == 1 for d in g["mig"]["devices"]))
        device = next(d for d in gpu["mig"]["devices"] if d["slice_count"] == 1)
        with nvml(host) as pynvml:
            parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
            gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, device["gi"])
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi, pynvml.NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE, 0)

    @pytest.mark.parametrize(("profile", "engine"), [(0, 1), (99, 0)])
    def test_out_of_range_profile_or_engine_is_an_invalid_argument(
            self, sim_host_factory: Any, profile: int, engine: int) -> None:
        host = sim_host_factory("dgx-a100-mig")
        gpu = next(g for g in host.topology["gpus"] if g["mig"]["devices"])
        with nvml(host) as pynvml:
            parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
            gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, gpu["mig"]["devices"][0]["gi"])
            with pytest.raises(pynvml.NVMLError_InvalidArgument):
                pynvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, profile, engine)

    def test_v_variant_refuses_an_unknown_struct_version(self, sim_host_factory: Any) -> None:
        host = sim_host_factory("dgx-a100-mig")
        gpu = next(g for g in host.topology["gpus"] if g["mig"]["devices"])
        with nvml(host) as pynvml:
            parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
            gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, gpu["mig"]["devices"][0]["gi"])
            info = pynvml.c_nvmlComputeInstanceProfileInfo_v2_t()
            info.version = 7
            fn = pynvml._nvmlGetFunctionPointer("nvmlGpuInstanceGetComputeInstanceProfileInfoV")
            assert fn(gi, 0, 0, ctypes.byref(info)) == \
                pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH


def test_compute_instances_of_an_instance_list_its_one_compute_instance(
        sim_host_factory: Any) -> None:
    """nvmlGpuInstanceGetComputeInstances: the instance's compute instance under its profile,
    none under another supported profile."""
    host = sim_host_factory("dgx-a100-mig")
    gpu = next(g for g in host.topology["gpus"]
               if any(d["slice_count"] > 1 for d in g["mig"]["devices"]))
    device = next(d for d in gpu["mig"]["devices"] if d["slice_count"] > 1)
    with nvml(host) as pynvml:
        parent = pynvml.nvmlDeviceGetHandleByIndex(gpu["index"])
        gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, device["gi"])
        own = pynvml.nvmlComputeInstanceGetInfo(
            pynvml.nvmlGpuInstanceGetComputeInstanceById(gi, device["ci"])).profileId
        buffer = (pynvml.c_nvmlComputeInstance_t * 8)()
        count = ctypes.c_uint()
        pynvml.nvmlGpuInstanceGetComputeInstances(gi, own, buffer, ctypes.byref(count))
        listed = [pynvml.nvmlComputeInstanceGetInfo(buffer[i]).id for i in range(count.value)]
        pynvml.nvmlGpuInstanceGetComputeInstances(
            gi, pynvml.NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE, buffer, ctypes.byref(count))
        assert (listed, count.value) == ([device["ci"]], 0)
