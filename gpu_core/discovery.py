"""GPU discovery: what NVML, the host's device nodes and the driver's capability files say.

``discover`` is the I/O edge (NVML through pynvml, ``os.stat`` under ``dev_root``, files under
``driver_root`` and ``sysfs_root``); everything it returns is a frozen value that selection and
the modifiers consume without touching the host again.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.config import Config

T = TypeVar("T")

NV_MAJOR = 195
"""The NVIDIA character device major: fixed by the driver, unlike nvidia-uvm's and nvidia-caps'."""

CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")

# nvmlBrandType_t -> the spelling NVIDIA's go-nvlib uses; NVIDIA_REQUIRE_BRAND compares these
# case-insensitively, so "tesla" and "Tesla" both match.
BRANDS = (
    "Unknown", "Quadro", "Tesla", "NVS", "Grid", "GeForce", "Titan", "NvidiaVApps", "NvidiaVPC",
    "NvidiaVCS", "NvidiaVWS", "NvidiaCloudGaming", "QuadroRTX", "NvidiaRTX", "Nvidia",
    "GeForceRTX", "TitanRTX", "NvidiaDLA", "NvidiaVGameDev", "NvidiaNPU",
)


@dataclass(frozen=True)
class MigDevice:
    """One MIG device (a compute instance inside a GPU instance) of a GPU in MIG mode."""

    uuid: str
    parent_uuid: str
    parent_index: int
    gi_id: int
    ci_id: int
    profile: str
    """The GPU-instance profile name without NVIDIA's ``MIG `` prefix, e.g. ``1g.10gb``."""
    profile_id: int
    """NVML's GPU-instance profile *id* (what ``nvmlGpuInstanceGetInfo`` reports), not the
    ``NVML_GPU_INSTANCE_PROFILE_*`` enum index."""
    memory_mib: int
    gi_cap_minor: Optional[int]
    """nvidia-caps minor of the GPU instance's access capability; None when the driver has none."""
    ci_cap_minor: Optional[int]
    index: int
    """The slot given to ``nvmlDeviceGetMigDeviceHandleByIndex``: ``<mig>`` in ``<gpu>:<mig>``."""


@dataclass(frozen=True)
class Gpu:
    """One physical GPU as NVML reports it."""

    index: int
    uuid: str
    minor: int
    bus_id: str
    """NVML's form, ``00000000:07:00.0`` (8-digit domain, upper-case hex)."""
    name: str
    brand: str
    cc: str
    """CUDA compute capability, ``8.0``; libnvidia-container calls this the arch."""
    memory_bytes: int
    mig_mode: bool
    mig_devices: tuple[MigDevice, ...]
    numa_node: Optional[int]


@dataclass(frozen=True)
class DeviceNode:
    """A host character device and how it appears in a container."""

    path: str
    """Path inside the container, e.g. ``/dev/nvidia3``."""
    host_path: str
    major: int
    minor: int
    file_mode: int
    """Permission bits only (``0o666``), as OCI ``linux.devices[].fileMode`` wants them."""
    uid: int
    gid: int


@dataclass(frozen=True)
class Inventory:
    """Everything discovery learned about one host."""

    driver_version: str
    cuda_version: str
    """The CUDA driver API version, ``12.2``."""
    gpus: tuple[Gpu, ...]
    control_nodes: tuple[DeviceNode, ...]
    """Those of nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset that exist, in order."""
    gpu_nodes: Mapping[int, DeviceNode]
    """GPU minor -> its ``/dev/nvidiaN``; a GPU whose node is missing has no entry."""
    cap_nodes: Mapping[int, DeviceNode]
    """nvidia-caps minor -> ``/dev/nvidia-caps/nvidia-capN`` for every capability discovery saw."""
    mig_global_caps: Mapping[str, int] = field(default_factory=dict)
    """``config``/``monitor`` -> nvidia-caps minor of the global MIG capabilities, when present."""

    def control_node(self, name: str) -> Optional[DeviceNode]:
        """The control node ``/dev/<name>``, or None when the host lacks it."""
        wanted = "/dev/" + name
        return next((node for node in self.control_nodes if node.path == wanted), None)


def discover_from_config(config: Config) -> Inventory:
    """Discover with the NVML library and host roots named by ``config``."""
    host = config.host
    return discover(nvml_library=config.nvml.library, dev_root=host.dev_root,
                    driver_root=host.driver_root, sysfs_root=host.sysfs_root)


def discover(nvml_library: str, dev_root: str, driver_root: str, sysfs_root: str) -> Inventory:
    """Query NVML (``nvml_library`` or the default ``libnvidia-ml.so.1``) and the host roots."""
    driver_version, cuda_version, raw_gpus = _query_nvml(nvml_library)
    caps_dir = os.path.join(driver_root, "proc/driver/nvidia/capabilities")
    majors = char_majors(dev_root, driver_root)
    gpus: list[Gpu] = []
    cap_nodes: dict[int, DeviceNode] = {}
    for raw in raw_gpus:
        migs = []
        for mig in raw.pop("mig_devices"):
            gi_cap = _read_cap_access(
                os.path.join(caps_dir, f"gpu{raw['minor']}", "mig", f"gi{mig['gi_id']}", "access"))
            ci_cap = _read_cap_access(os.path.join(
                caps_dir, f"gpu{raw['minor']}", "mig", f"gi{mig['gi_id']}", f"ci{mig['ci_id']}",
                "access"))
            for cap in (gi_cap, ci_cap):
                _add_cap_node(cap_nodes, cap, dev_root, majors)
            migs.append(MigDevice(
                parent_uuid=raw["uuid"], parent_index=raw["index"],
                gi_cap_minor=gi_cap[0] if gi_cap else None,
                ci_cap_minor=ci_cap[0] if ci_cap else None, **mig))
        gpus.append(Gpu(mig_devices=tuple(migs),
                        numa_node=_numa_node(sysfs_root, raw["bus_id"]), **raw))
    global_caps: dict[str, int] = {}
    for name in ("config", "monitor"):
        cap = _read_cap_access(os.path.join(caps_dir, "mig", name))
        if cap is not None:
            global_caps[name] = cap[0]
            _add_cap_node(cap_nodes, cap, dev_root, majors)
    controls = tuple(node for node in (_read_node(dev_root, name) for name in CONTROL_NODES)
                     if node is not None)
    gpu_nodes = {gpu.minor: node for gpu in gpus
                 if (node := _read_node(dev_root, f"nvidia{gpu.minor}")) is not None}
    return Inventory(driver_version=driver_version, cuda_version=cuda_version, gpus=tuple(gpus),
                     control_nodes=controls, gpu_nodes=gpu_nodes, cap_nodes=cap_nodes,
                     mig_global_caps=global_caps)


# --- NVML ---------------------------------------------------------------------------------------

def _query_nvml(library: str) -> tuple[str, str, list[dict[str, Any]]]:
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


# --- host files ---------------------------------------------------------------------------------

def _read_node(dev_root: str, name: str) -> Optional[DeviceNode]:
    """The character device ``dev_root/name`` as a DeviceNode; None when absent or not a char
    device (a node the driver has not created yet is simply not there)."""
    host_path = os.path.join(dev_root, name)
    try:
        info = os.stat(host_path)
    except OSError:
        return None
    if not stat.S_ISCHR(info.st_mode):
        return None
    return DeviceNode(path="/dev/" + name, host_path=host_path, major=os.major(info.st_rdev),
                      minor=os.minor(info.st_rdev), file_mode=stat.S_IMODE(info.st_mode),
                      uid=info.st_uid, gid=info.st_gid)


_CAP_LINE = re.compile(r"^[ \t]*(DeviceFileMinor|DeviceFileMode)[ \t]*:[ \t]*(\d{1,9})[ \t]*$",
                       re.MULTILINE | re.ASCII)


def _read_cap_access(path: str) -> Optional[tuple[int, int]]:
    """(minor, mode) from a capability file in the kernel's ``DeviceFileMinor: N`` format."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(4096)
    except OSError:
        return None
    fields = dict(_CAP_LINE.findall(text))
    if "DeviceFileMinor" not in fields:
        return None
    return int(fields["DeviceFileMinor"]), int(fields.get("DeviceFileMode", "292")) & 0o7777


def _add_cap_node(nodes: dict[int, DeviceNode], cap: Optional[tuple[int, int]], dev_root: str,
                  majors: Mapping[str, int]) -> None:
    """Record the nvidia-caps node of ``cap``. nvidia-modprobe creates these nodes on demand, so
    a missing one is described as it will be created: the nvidia-caps major, the mode the
    capability file names, owned by root."""
    if cap is None or cap[0] in nodes:
        return
    minor, mode = cap
    name = f"nvidia-caps/nvidia-cap{minor}"
    node = _read_node(dev_root, name)
    if node is None and "nvidia-caps" in majors:
        node = DeviceNode(path="/dev/" + name, host_path=os.path.join(dev_root, name),
                          major=majors["nvidia-caps"], minor=minor, file_mode=mode, uid=0, gid=0)
    if node is not None:
        nodes[minor] = node


def char_majors(dev_root: str, driver_root: str) -> dict[str, int]:
    """Character majors by driver name from ``/proc/devices``: beside the driver root, else
    beside the device root (a simulated host keeps its own), else the real one."""
    for path in (os.path.join(driver_root, "proc/devices"),
                 os.path.join(os.path.dirname(os.path.normpath(dev_root)), "proc/devices"),
                 "/proc/devices"):
        try:
            with open(path, encoding="ascii", errors="replace") as stream:
                text = stream.read(65536)
        except OSError:
            continue
        block = text.split("Block devices:")[0]
        pairs = re.findall(r"^[ \t]*(\d{1,9})[ \t]+(\S+)[ \t]*$", block, re.MULTILINE | re.ASCII)
        return {name: int(major) for major, name in pairs}
    return {}


def _numa_node(sysfs_root: str, bus_id: str) -> Optional[int]:
    """The GPU's NUMA node from sysfs; None when unknown (the kernel says -1 on one-node hosts)."""
    address = sysfs_bus_id(bus_id)
    if address is None:
        return None
    try:
        with open(os.path.join(sysfs_root, "bus/pci/devices", address, "numa_node"),
                  encoding="ascii") as stream:
            node = int(stream.read(64).strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


_BUS_ID = re.compile(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])",
                     re.IGNORECASE | re.ASCII)


def parse_bus_id(text: str) -> Optional[tuple[int, int, int, int]]:
    """(domain, bus, device, function) of a PCI address in any of NVML's 8-digit-domain form,
    sysfs' 4-digit form or the short ``07:00.0`` form (domain 0); None if it is not one."""
    match = _BUS_ID.fullmatch(text.strip())
    if match is None:
        return None
    domain, bus, device, function = match.groups()
    return int(domain or "0", 16), int(bus, 16), int(device, 16), int(function)


def sysfs_bus_id(bus_id: str) -> Optional[str]:
    """``00000000:07:00.0`` -> ``0000:07:00.0``, the name sysfs uses."""
    parsed = parse_bus_id(bus_id)
    if parsed is None:
        return None
    domain, bus, device, function = parsed
    return f"{domain:04x}:{bus:02x}:{device:02x}.{function:x}"
