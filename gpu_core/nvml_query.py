"""Reading NVML through pynvml: the driver, every GPU and its MIG devices, as plain dicts that
``gpu_core.discovery`` turns into the inventory (``gpu_core.inventory``).

pynvml is imported only when a query runs; every NVML failure becomes one ShimError line naming
the call and the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable, Optional, TypeVar

from gpu_core.errors import ShimError, one_line

T = TypeVar("T")

# nvmlBrandType_t -> the spelling NVIDIA's go-nvlib uses; NVIDIA_REQUIRE_BRAND compares these
# case-insensitively, so "tesla" and "Tesla" both match.
BRANDS = (
    "Unknown", "Quadro", "Tesla", "NVS", "Grid", "GeForce", "Titan", "NvidiaVApps", "NvidiaVPC",
    "NvidiaVCS", "NvidiaVWS", "NvidiaCloudGaming", "QuadroRTX", "NvidiaRTX", "Nvidia",
    "GeForceRTX", "TitanRTX", "NvidiaDLA", "NvidiaVGameDev", "NvidiaNPU",
)


def query_nvml(library: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Init NVML, read the driver and every GPU (with its MIG devices), always shut down."""
    import pynvml

    bind_library(pynvml, library)
    _call(pynvml, "nvmlInitWithFlags", pynvml.nvmlInitWithFlags, 0)
    try:
        driver = _text(_call(pynvml, "nvmlSystemGetDriverVersion",
                             pynvml.nvmlSystemGetDriverVersion))
        cuda = _call(pynvml, "nvmlSystemGetCudaDriverVersion",
                     pynvml.nvmlSystemGetCudaDriverVersion)
        count = _call(pynvml, "nvmlDeviceGetCount_v2", pynvml.nvmlDeviceGetCount)
        gpus = [_query_gpu(pynvml, index) for index in range(count)]
    finally:
        # The query's own result (or error) is what matters to the caller, not shutdown's.
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return driver, f"{cuda // 1000}.{(cuda % 1000) // 10}", gpus


@contextlib.contextmanager
def nvml_held(library: str) -> Iterator[None]:
    """Keep one NVML reference open around several users (the hook's discovery, then its
    readiness wait). NVML counts nvmlInit/nvmlShutdown: the driver state is set up by the first
    init and torn down by the last shutdown, which takes seconds on a host without persistence
    mode. An init that fails here is no error: each user inits itself and reports it."""
    import pynvml

    bind_library(pynvml, library)
    try:
        pynvml.nvmlInitWithFlags(0)
        held = True
    except pynvml.NVMLError:
        held = False
    try:
        yield
    finally:
        if held:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()


def bind_library(pynvml: Any, library: str) -> None:
    """Point pynvml at ``library``: it only ever dlopens ``libnvidia-ml.so.1`` by name, so set
    its module-level handle ourselves, under its own lock, and drop function pointers cached from
    a library loaded before (a process may discover several simulated hosts)."""
    import ctypes

    wanted = library or "libnvidia-ml.so.1"
    with pynvml.libLoadLock:
        current = pynvml.nvmlLib
        if current is not None and getattr(current, "_name", None) == wanted:
            return
        if library:
            try:
                pynvml.nvmlLib = ctypes.CDLL(library)
            except OSError as exc:
                raise ShimError("discovery", one_line(f"nvml: cannot load {library}: {exc}")) \
                    from None
        else:
            pynvml.nvmlLib = None  # pynvml loads the default on nvmlInit
        pynvml._nvmlGetFunctionPointer_cache.clear()


def _call(pynvml: Any, name: str, fn: Callable[..., T], *args: Any, what: str = "") -> T:
    """Run one pynvml call; an NVML failure becomes ``discovery: nvml: <message> (<call>)``."""
    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        raise _nvml_error(pynvml, exc, name, what) from None


def _nvml_error(pynvml: Any, exc: Any, name: str, what: str) -> ShimError:
    """The one shape of an NVML failure: the library's message, then the call and the device."""
    return ShimError("discovery", one_line(
        f"nvml: {_error_string(pynvml, exc)} ({name}{' ' + what if what else ''})"))


def _error_string(pynvml: Any, exc: Any) -> str:
    """The library's own ``nvmlErrorString``; pynvml's table when the library cannot say."""
    try:
        return _text(pynvml.nvmlErrorString(exc.value)) or str(exc)
    except Exception:  # no library loaded, or no such symbol: pynvml's own text will do
        return str(exc)


def _query_gpu(pynvml: Any, index: int) -> dict[str, Any]:
    """One GPU's fields (``Gpu`` keyword arguments) plus its raw MIG device list."""
    at = f"gpu {index}"
    handle = _call(pynvml, "nvmlDeviceGetHandleByIndex_v2", pynvml.nvmlDeviceGetHandleByIndex,
                   index, what=at)

    def get(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return _call(pynvml, name, fn, handle, *args, what=at)

    pci = get("nvmlDeviceGetPciInfo_v3", pynvml.nvmlDeviceGetPciInfo_v3)
    brand = get("nvmlDeviceGetBrand", pynvml.nvmlDeviceGetBrand)
    cc_major, cc_minor = get("nvmlDeviceGetCudaComputeCapability",
                             pynvml.nvmlDeviceGetCudaComputeCapability)
    memory = get("nvmlDeviceGetMemoryInfo", pynvml.nvmlDeviceGetMemoryInfo)
    mig_mode = _mig_mode(pynvml, handle, at)
    return {
        "index": index,
        "uuid": _text(get("nvmlDeviceGetUUID", pynvml.nvmlDeviceGetUUID)),
        "minor": get("nvmlDeviceGetMinorNumber", pynvml.nvmlDeviceGetMinorNumber),
        "bus_id": _text(pci.busId),
        "name": _text(get("nvmlDeviceGetName", pynvml.nvmlDeviceGetName)),
        "brand": BRANDS[brand] if 0 <= brand < len(BRANDS) else "Unknown",
        "cc": f"{cc_major}.{cc_minor}",
        "memory_bytes": int(memory.total),
        "mig_mode": mig_mode,
        "mig_devices": _query_migs(pynvml, handle, index, int(memory.total)) if mig_mode else [],
    }


def _mig_mode(pynvml: Any, handle: Any, at: str) -> bool:
    """Whether MIG is enabled now; GPUs without MIG support say NOT_SUPPORTED, which is 'no'."""
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError as exc:
        if exc.value in (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND):
            return False
        raise _nvml_error(pynvml, exc, "nvmlDeviceGetMigMode", at) from None
    return bool(current == pynvml.NVML_DEVICE_MIG_ENABLE)


def _query_migs(pynvml: Any, parent: Any, index: int, total_bytes: int) -> list[dict[str, Any]]:
    """The MIG devices of GPU ``index``, in slot order (empty slots say NOT_FOUND)."""
    at = f"gpu {index}"
    slots = _call(pynvml, "nvmlDeviceGetMaxMigDeviceCount", pynvml.nvmlDeviceGetMaxMigDeviceCount,
                  parent, what=at)
    profiles: Optional[dict[int, tuple[str, int]]] = None
    found = []
    for slot in range(slots):
        mat = f"gpu {index} mig {slot}"
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
        except pynvml.NVMLError as exc:
            if exc.value == pynvml.NVML_ERROR_NOT_FOUND:
                continue
            raise _nvml_error(pynvml, exc, "nvmlDeviceGetMigDeviceHandleByIndex", mat) from None
        gi_id = _call(pynvml, "nvmlDeviceGetGpuInstanceId", pynvml.nvmlDeviceGetGpuInstanceId,
                      mig, what=mat)
        attrs = _call(pynvml, "nvmlDeviceGetAttributes_v2", pynvml.nvmlDeviceGetAttributes_v2,
                      mig, what=mat)
        instance = _call(pynvml, "nvmlDeviceGetGpuInstanceById",
                         pynvml.nvmlDeviceGetGpuInstanceById, parent, gi_id, what=mat)
        profile_id = _call(pynvml, "nvmlGpuInstanceGetInfo", pynvml.nvmlGpuInstanceGetInfo,
                           instance, what=mat).profileId
        if profiles is None:
            profiles = _profile_table(pynvml, parent, at, total_bytes)
        name, _memory = profiles.get(profile_id, ("", 0))
        found.append({
            "uuid": _text(_call(pynvml, "nvmlDeviceGetUUID", pynvml.nvmlDeviceGetUUID, mig,
                                what=mat)),
            "gi_id": gi_id,
            "ci_id": _call(pynvml, "nvmlDeviceGetComputeInstanceId",
                           pynvml.nvmlDeviceGetComputeInstanceId, mig, what=mat),
            "profile": name or profile_name(attrs.gpuInstanceSliceCount, attrs.memorySizeMB,
                                            total_bytes),
            "profile_id": profile_id,
            "memory_mib": int(attrs.memorySizeMB),
            "index": slot,
        })
    return found


def _profile_table(pynvml: Any, parent: Any, at: str, total_bytes: int
                   ) -> dict[int, tuple[str, int]]:
    """Profile id -> (name, memory MiB) over every ``NVML_GPU_INSTANCE_PROFILE_*`` enum value the
    GPU supports; the id is what GPU instances report, the enum index only what we ask with."""
    table: dict[int, tuple[str, int]] = {}
    skip = (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_INVALID_ARGUMENT,
            pynvml.NVML_ERROR_NOT_FOUND)
    for enum in range(getattr(pynvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", 9)):
        try:
            info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, enum, 2)
            name = _text(info.name)
        except pynvml.NVMLError as exc:
            if exc.value in skip:
                continue
            if exc.value != pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
                raise _nvml_error(pynvml, exc, "nvmlDeviceGetGpuInstanceProfileInfoV", at) from None
            try:  # drivers before the V call: the v1 struct has no name, so derive it
                info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(parent, enum, 1)
            except pynvml.NVMLError as exc1:
                if exc1.value in skip:
                    continue
                raise _nvml_error(pynvml, exc1, "nvmlDeviceGetGpuInstanceProfileInfo", at) \
                    from None
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
