"""Reading NVML through ``gpu_core.nvml_lib``: the driver, every GPU and its MIG devices, as plain
dicts that ``gpu_core.discovery`` turns into the inventory (``gpu_core.inventory``).

Every NVML failure becomes one ShimError line naming the call and the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Optional

from gpu_core.errors import ShimError, one_line
from gpu_core.nvml_lib import (
    DEVICE_MIG_ENABLE,
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_INVALID_ARGUMENT,
    ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    GPU_INSTANCE_PROFILE_COUNT,
    Nvml,
    NvmlError,
    open_nvml,
)

# nvmlBrandType_t -> the spelling NVIDIA's go-nvlib uses; NVIDIA_REQUIRE_BRAND compares these
# case-insensitively, so "tesla" and "Tesla" both match.
BRANDS = (
    "Unknown", "Quadro", "Tesla", "NVS", "Grid", "GeForce", "Titan", "NvidiaVApps", "NvidiaVPC",
    "NvidiaVCS", "NvidiaVWS", "NvidiaCloudGaming", "QuadroRTX", "NvidiaRTX", "Nvidia",
    "GeForceRTX", "TitanRTX", "NvidiaDLA", "NvidiaVGameDev", "NvidiaNPU",
)


def query_nvml(library: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Init NVML, read the driver and every GPU (with its MIG devices), always shut down."""
    nvml = open_nvml(library)
    with reported():
        nvml.init()
    try:
        with reported():
            driver = nvml.driver_version()
            cuda = nvml.cuda_driver_version()
            count = nvml.device_count()
        gpus = [_query_gpu(nvml, index) for index in range(count)]
    finally:
        # The query's own result (or error) is what matters to the caller, not shutdown's.
        with contextlib.suppress(NvmlError):
            nvml.shutdown()
    return driver, f"{cuda // 1000}.{(cuda % 1000) // 10}", gpus


@contextlib.contextmanager
def nvml_held(library: str) -> Iterator[None]:
    """Keep one NVML reference open around several users (the hook's discovery, then its
    readiness wait). NVML counts nvmlInit/nvmlShutdown: the driver state is set up by the first
    init and torn down by the last shutdown, which takes seconds on a host without persistence
    mode. An init that fails here is no error: each user inits itself and reports it."""
    nvml = open_nvml(library)
    try:
        nvml.init()
        held = True
    except NvmlError:
        held = False
    try:
        yield
    finally:
        if held:
            with contextlib.suppress(NvmlError):
                nvml.shutdown()


@contextlib.contextmanager
def reported(what: str = "") -> Iterator[None]:
    """An NVML failure inside becomes ``discovery: nvml: <message> (<call> <what>)``."""
    try:
        yield
    except NvmlError as exc:
        raise nvml_error(exc, what) from None


TRANSIENT_CODES = frozenset({9, 10, 999})
"""NVML_ERROR_DRIVER_NOT_LOADED, _TIMEOUT and _UNKNOWN: the NVML failures worth retrying, the
same ones libnvidia-container's messages are retried for (libnvc_bindings/classification.py:
``nvml error: driver not loaded``, ``timeout``, ``unknown error``); GPU_IS_LOST and the rest are
permanent."""


class NvmlFailure(ShimError):
    """A failed NVML call as a ``discovery`` error; ``code`` is NVML's return value."""

    def __init__(self, cause: str, code: int) -> None:
        super().__init__("discovery", cause)
        self.code = code

    @property
    def transient(self) -> bool:
        """Whether a retry may help (``TRANSIENT_CODES``)."""
        return self.code in TRANSIENT_CODES


def nvml_error(exc: NvmlError, what: str) -> ShimError:
    """The one shape of an NVML failure: the library's message, then the call and the device."""
    return NvmlFailure(one_line(f"nvml: {exc} ({exc.call}{' ' + what if what else ''})"),
                       exc.value)


def _query_gpu(nvml: Nvml, index: int) -> dict[str, Any]:
    """One GPU's fields (``Gpu`` keyword arguments) plus its raw MIG device list."""
    at = f"gpu {index}"
    with reported(at):
        handle = nvml.handle_by_index(index)
        pci = nvml.pci_info(handle)
        brand = nvml.brand(handle)
        cc_major, cc_minor = nvml.compute_capability(handle)
        memory = nvml.memory_info(handle)
        mig_mode = _mig_mode(nvml, handle)
        fields = {
            "index": index,
            "uuid": nvml.uuid(handle),
            "minor": nvml.minor_number(handle),
            "bus_id": _text(pci.busId),
            "name": nvml.name(handle),
            "brand": BRANDS[brand] if 0 <= brand < len(BRANDS) else "Unknown",
            "cc": f"{cc_major}.{cc_minor}",
            "memory_bytes": int(memory.total),
            "mig_mode": mig_mode,
        }
    fields["mig_devices"] = _query_migs(nvml, handle, index, int(memory.total)) \
        if mig_mode else []
    return fields


def _mig_mode(nvml: Nvml, handle: Any) -> bool:
    """Whether MIG is enabled now; GPUs without MIG support say NOT_SUPPORTED, which is 'no'."""
    try:
        current, _pending = nvml.mig_mode(handle)
    except NvmlError as exc:
        if exc.value in (ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND):
            return False
        raise
    return current == DEVICE_MIG_ENABLE


def _query_migs(nvml: Nvml, parent: Any, index: int, total_bytes: int) -> list[dict[str, Any]]:
    """The MIG devices of GPU ``index``, in slot order (empty slots say NOT_FOUND)."""
    at = f"gpu {index}"
    with reported(at):
        slots = nvml.max_mig_device_count(parent)
    profiles: Optional[dict[int, tuple[str, int]]] = None
    found = []
    for slot in range(slots):
        with reported(f"gpu {index} mig {slot}"):
            try:
                mig = nvml.mig_handle_by_index(parent, slot)
            except NvmlError as exc:
                if exc.value == ERROR_NOT_FOUND:
                    continue
                raise
            gi_id = nvml.gpu_instance_id(mig)
            attrs = nvml.attributes(mig)
            profile_id = nvml.gpu_instance_info(nvml.gpu_instance_by_id(parent, gi_id)).profileId
        if profiles is None:
            with reported(at):
                profiles = _profile_table(nvml, parent, total_bytes)
        name, _memory = profiles.get(profile_id, ("", 0))
        with reported(f"gpu {index} mig {slot}"):
            found.append({
                "uuid": nvml.uuid(mig),
                "gi_id": gi_id,
                "ci_id": nvml.compute_instance_id(mig),
                "profile": name or profile_name(attrs.gpuInstanceSliceCount, attrs.memorySizeMB,
                                                total_bytes),
                "profile_id": profile_id,
                "memory_mib": int(attrs.memorySizeMB),
                "index": slot,
            })
    return found


def _profile_table(nvml: Nvml, parent: Any, total_bytes: int) -> dict[int, tuple[str, int]]:
    """Profile id -> (name, memory MiB) over every ``NVML_GPU_INSTANCE_PROFILE_*`` enum value the
    GPU supports; the id is what GPU instances report, the enum index only what we ask with."""
    table: dict[int, tuple[str, int]] = {}
    skip = (ERROR_NOT_SUPPORTED, ERROR_INVALID_ARGUMENT, ERROR_NOT_FOUND)
    for enum in range(GPU_INSTANCE_PROFILE_COUNT):
        info: Any
        try:
            info = nvml.gpu_instance_profile_info(parent, enum)
            name = _text(info.name)
        except NvmlError as exc:
            if exc.value in skip:
                continue
            if exc.value != ERROR_FUNCTION_NOT_FOUND:
                raise
            try:  # drivers before the V call: the v1 struct has no name, so derive it
                info = nvml.gpu_instance_profile_info_v1(parent, enum)
            except NvmlError as exc1:
                if exc1.value in skip:
                    continue
                raise
            name = ""
        name = name[4:] if name.startswith("MIG ") else name
        if not name:
            name = profile_name(info.sliceCount, info.memorySizeMB, total_bytes,
                                "+me" if enum == 0x7 else "")
        table[int(info.id)] = (name, int(info.memorySizeMB))
    return table


def profile_name(slices: int, memory_mib: int, total_bytes: int, suffix: str = "") -> str:
    """NVIDIA's profile naming, ``<slices>g.<GB>gb``: the instance's share of memory rounded up to
    an eighth of the GPU, times the GPU's memory in whole GB (as go-nvlib computes it)."""
    import math

    gib = 1024 ** 3
    if total_bytes <= 0:
        return f"{slices}g.{round(memory_mib / 1024)}gb{suffix}"
    fraction = math.ceil(memory_mib * 1024 * 1024 / total_bytes * 8) / 8
    return f"{slices}g.{round(fraction * ((total_bytes + gib - 1) // gib))}gb{suffix}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
