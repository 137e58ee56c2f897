"""gpu_core.nvml_lib, the ctypes NVML binding, against the simulated libnvidia-ml.so.1 (which
implements NVML's C ABI) and against nvidia-ml-py's struct layouts (the real ABI)."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from gpu_core import nvml_lib, nvml_structs
from gpu_core.errors import ShimError
from gpu_core.nvml_lib import Nvml, NvmlError, open_nvml

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]


@contextmanager
def started(host: SimHost) -> Iterator[Nvml]:
    """The binding on ``host``'s library, initialised, shut down afterwards."""
    nvml = open_nvml(str(host.nvml_library))
    nvml.init()
    try:
        yield nvml
    finally:
        nvml.shutdown()


# --- layouts --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ours", "theirs"), [
    ("PciInfo", "nvmlPciInfo_t"),
    ("Memory", "c_nvmlMemory_t"),
    ("DeviceAttributes", "c_nvmlDeviceAttributes"),
    ("GpuInstancePlacement", "c_nvmlGpuInstancePlacement_t"),
    ("GpuInstanceInfo", "c_nvmlGpuInstanceInfo_t"),
    ("GpuInstanceProfileInfo", "c_nvmlGpuInstanceProfileInfo_t"),
    ("GpuInstanceProfileInfoV2", "c_nvmlGpuInstanceProfileInfo_v2_t"),
])
def test_struct_layout_is_nvidia_ml_py_s(ours: str, theirs: str) -> None:
    """Each struct has nvidia-ml-py's field names, offsets and size (nvml.h's layout)."""
    import pynvml

    def layout(kind: Any) -> list[tuple[str, int, int]]:
        return [(name, getattr(kind, name).offset, getattr(kind, name).size)
                for name, *_ in kind._fields_] + [("sizeof", 0, ctypes.sizeof(kind))]

    assert layout(getattr(nvml_structs, ours)) == layout(getattr(pynvml, theirs))


def test_profile_info_version_is_nvml_s() -> None:
    """The V call's version word is NVML_STRUCT_VERSION(nvmlGpuInstanceProfileInfo_v2_t, 2)."""
    import pynvml

    assert pynvml.nvmlGpuInstanceProfileInfo_v2 == nvml_structs.PROFILE_INFO_V2


# --- loading --------------------------------------------------------------------------------------

def test_configured_library_that_cannot_load_is_a_discovery_error(tmp_path: Path) -> None:
    """A configured path that does not load is one discovery line naming it."""
    missing = tmp_path / "libnvidia-ml.so.1"
    with pytest.raises(ShimError) as caught:
        open_nvml(str(missing))
    assert (caught.value.stage, caught.value.cause.startswith(f"nvml: cannot load {missing}: ")) \
        == ("discovery", True)


def test_missing_default_library_fails_each_call_as_library_not_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libnvidia-ml.so.1 the init says LIBRARY_NOT_FOUND (12), pynvml's text."""
    monkeypatch.setattr(nvml_lib, "DEFAULT_LIBRARY", "libnvidia-ml-absent.so.1")
    with pytest.raises(NvmlError) as caught:
        open_nvml("").init()
    assert (caught.value.value, str(caught.value), caught.value.call) == \
        (12, "NVML Shared Library Not Found", "nvmlInitWithFlags")


def test_default_library_installed_later_is_found_by_the_next_call(
        sim_host_factory: SimHostFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver installed while the hook waits: the first init says LIBRARY_NOT_FOUND, the
    next one (same Nvml) loads the library and succeeds."""
    import shutil

    default = tmp_path / "libnvidia-ml.so.1"
    monkeypatch.setattr(nvml_lib, "DEFAULT_LIBRARY", str(default))
    nvml = open_nvml("")
    with pytest.raises(NvmlError) as caught:
        nvml.init()
    shutil.copy(sim_host_factory("t4").nvml_library, default)
    nvml.init()
    try:
        assert (caught.value.value, nvml.device_count()) == (12, 1)
    finally:
        nvml.shutdown()


def test_library_without_the_symbol_is_function_not_found() -> None:
    """A library lacking the call answers FUNCTION_NOT_FOUND (13) naming the call."""
    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(NvmlError) as caught:
        open_nvml(libc).init()
    assert (caught.value.value, str(caught.value), caught.value.call) == \
        (13, "Function Not Found", "nvmlInitWithFlags")


def test_one_library_is_loaded_once_per_process(sim_host_factory: SimHostFactory) -> None:
    """Every user of one path shares one Nvml, so its init count is the process's."""
    host = sim_host_factory("t4")
    assert open_nvml(str(host.nvml_library)) is open_nvml(str(host.nvml_library))


def test_references_follow_init_and_shutdown(sim_host_factory: SimHostFactory) -> None:
    """references counts inits not yet shut down."""
    nvml = open_nvml(str(sim_host_factory("t4").nvml_library))
    nvml.init()
    nvml.init()
    counts = [nvml.references]
    nvml.shutdown()
    nvml.shutdown()
    assert [*counts, nvml.references] == [2, 0]


# --- the calls ------------------------------------------------------------------------------------

def test_system_calls(sim_host_factory: SimHostFactory) -> None:
    """Driver 535.104.05, CUDA 12.2 as 12020, one GPU on the T4 host."""
    with started(sim_host_factory("t4")) as nvml:
        assert (nvml.driver_version(), nvml.cuda_driver_version(), nvml.device_count()) == \
            ("535.104.05", 12020, 1)


@pytest.mark.parametrize("topology", ["t4", "dgx-a100"])
def test_device_calls_match_the_topology(sim_host_factory: SimHostFactory,
                                         topology: str) -> None:
    """Name, UUID, bus id, minor, memory, compute capability and persistence per GPU."""
    host = sim_host_factory(topology)
    with started(host) as nvml:
        for gpu in host.topology["gpus"]:
            handle = nvml.handle_by_index(gpu["index"])
            major, minor = (int(part) for part in gpu["compute_capability"].split("."))
            assert (nvml.name(handle), nvml.uuid(handle), nvml.pci_info(handle).busId.decode(),
                    nvml.minor_number(handle), nvml.memory_info(handle).total,
                    nvml.compute_capability(handle), nvml.persistence_mode(handle)) == \
                (gpu["name"], gpu["uuid"], gpu["bus_id"], gpu["minor"],
                 gpu["memory_mib"] << 20, (major, minor), nvml_lib.FEATURE_ENABLED)


def test_pci_info_fields_after_the_legacy_bus_id(sim_host_factory: SimHostFactory) -> None:
    """domain/bus/device/pciDeviceId sit after the 16-byte legacy bus id."""
    with started(sim_host_factory("dgx-a100")) as nvml:
        pci = nvml.pci_info(nvml.handle_by_index(1))
    assert (pci.busIdLegacy.decode(), pci.domain, pci.bus, pci.device, pci.pciDeviceId) == \
        ("0000:0F:00.0", 0, 0x0F, 0, 0x20B210DE)


@pytest.mark.parametrize(("topology", "brand"), [("t4", 2), ("dgx-a100", 14)])
def test_brand(sim_host_factory: SimHostFactory, topology: str, brand: int) -> None:
    """The T4 is NVML_BRAND_TESLA, the A100 NVML_BRAND_NVIDIA."""
    with started(sim_host_factory(topology)) as nvml:
        assert nvml.brand(nvml.handle_by_index(0)) == brand


def test_handle_by_uuid_finds_that_gpu(sim_host_factory: SimHostFactory) -> None:
    """A GPU's UUID leads back to the GPU with that UUID."""
    host = sim_host_factory("dgx-a100")
    uuid = host.topology["gpus"][5]["uuid"]
    with started(host) as nvml:
        assert nvml.minor_number(nvml.handle_by_uuid(uuid)) == host.topology["gpus"][5]["minor"]


def test_mig_mode_per_gpu(sim_host_factory: SimHostFactory) -> None:
    """dgx-a100-mig: GPUs 0 and 1 have MIG enabled (current and pending), 7 slots each."""
    with started(sim_host_factory("dgx-a100-mig")) as nvml:
        handles = [nvml.handle_by_index(i) for i in range(2)]
        assert [(nvml.mig_mode(h), nvml.max_mig_device_count(h)) for h in handles] == \
            [((1, 1), 7), ((1, 1), 7)]


def test_mig_handles_and_their_instances(sim_host_factory: SimHostFactory) -> None:
    """A MIG handle by slot has the topology's UUID, GI and CI; its parent is the GPU; its GPU
    instance reports its id, profile id and placement."""
    host = sim_host_factory("dgx-a100-mig")
    device = host.topology["gpus"][1]["mig"]["devices"][1]
    with started(host) as nvml:
        parent = nvml.handle_by_index(1)
        mig = nvml.mig_handle_by_index(parent, 1)
        attributes = nvml.attributes(mig)
        info = nvml.gpu_instance_info(nvml.gpu_instance_by_id(parent, 1))
        assert (nvml.uuid(mig), nvml.gpu_instance_id(mig), nvml.compute_instance_id(mig),
                nvml.uuid(nvml.parent_of_mig(mig)),
                attributes.multiprocessorCount, attributes.gpuInstanceSliceCount,
                attributes.memorySizeMB) == \
            (device["uuid"], device["gi"], device["ci"], host.topology["gpus"][1]["uuid"],
             42, 3, 40192)
        assert (info.id, info.profileId, info.placement.start, info.placement.size) == \
            (1, 9, 4, 4)


def test_gpu_instance_profile_info_v2_and_v1(sim_host_factory: SimHostFactory) -> None:
    """Enum 0 (1 slice) is id 19 named 'MIG 1g.10gb'; enum 2 through v1 is id 9, 3 slices."""
    with started(sim_host_factory("dgx-a100-mig")) as nvml:
        parent = nvml.handle_by_index(0)
        one = nvml.gpu_instance_profile_info(parent, 0)
        three = nvml.gpu_instance_profile_info_v1(parent, 2)
    assert (one.id, one.name.decode(), one.memorySizeMB, one.instanceCount) == \
        (19, "MIG 1g.10gb", 9728, 7)
    assert (three.id, three.sliceCount, three.memorySizeMB) == (9, 3, 40192)


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "code", "message"), [
    (lambda nvml: nvml.handle_by_index(1), 2, "Invalid Argument"),
    (lambda nvml: nvml.handle_by_uuid("GPU-00000000-0000-0000-0000-000000000000"), 6,
     "Not Found"),
    (lambda nvml: nvml.mig_mode(nvml.handle_by_index(0)), 3, "Not Supported"),
])
def test_failures_carry_code_message_and_call(sim_host_factory: SimHostFactory,
                                              call: Callable[[Nvml], Any], code: int,
                                              message: str) -> None:
    """A failed call raises NvmlError with NVML's code and nvmlErrorString's text."""
    with started(sim_host_factory("t4")) as nvml, pytest.raises(NvmlError) as caught:
        call(nvml)
    assert (caught.value.value, str(caught.value)) == (code, message)


def test_lost_gpu_is_gpu_is_lost(sim_host_factory: SimHostFactory) -> None:
    """gpu-lost=1: GPU 1's lookup fails with 15 and the symbol that failed."""
    with started(sim_host_factory("dgx-a100", faults=["gpu-lost=1"])) as nvml, \
            pytest.raises(NvmlError) as caught:
        nvml.handle_by_index(1)
    assert (caught.value.value, str(caught.value), caught.value.call) == \
        (15, "GPU is lost", "nvmlDeviceGetHandleByIndex_v2")


def test_empty_mig_slot_is_not_found(sim_host_factory: SimHostFactory) -> None:
    """GPU 1 of dgx-a100-mig has two MIG devices: slot 2 answers NOT_FOUND."""
    with started(sim_host_factory("dgx-a100-mig")) as nvml, pytest.raises(NvmlError) as caught:
        nvml.mig_handle_by_index(nvml.handle_by_index(1), 2)
    assert (caught.value.value, caught.value.call) == (6, "nvmlDeviceGetMigDeviceHandleByIndex")


def test_call_before_init_is_uninitialized(sim_host_factory: SimHostFactory) -> None:
    """Without an init, NVML answers UNINITIALIZED (1)."""
    nvml = open_nvml(str(sim_host_factory("t4").nvml_library))
    with pytest.raises(NvmlError) as caught:
        nvml.device_count()
    assert (caught.value.value, str(caught.value)) == (1, "Uninitialized")


@pytest.mark.parametrize(("code", "message"), [
    (9, "Driver Not Loaded"), (16, "GPU requires restart"), (12345, "Unknown Error"),
])
def test_error_string_is_the_library_s(sim_host_factory: SimHostFactory, code: int,
                                       message: str) -> None:
    """error_string asks nvmlErrorString."""
    assert open_nvml(str(sim_host_factory("t4").nvml_library)).error_string(code) == message


def test_error_string_without_a_library_names_the_code() -> None:
    """No library to ask: the text names the code."""
    assert Nvml(None).error_string(9) == "NVML Error with code 9"
