"""What discovery learned about one host, as frozen values: the GPUs, their MIG devices, the
device nodes, and PCI bus ids in the forms NVML and sysfs write them.

Pure: selection, the modifiers, the leases and gpu-ctk consume these without touching the host
again. The reading is ``gpu_core.discovery`` (host files) and ``gpu_core.nvml_query`` (NVML).
"""

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Optional

NV_MAJOR = 195
"""The NVIDIA character device major: fixed by the driver, unlike nvidia-uvm's and nvidia-caps'."""

CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def mig_cap_file(gpu_minor: int, gi_id: int, ci_id: Optional[int] = None) -> str:
    """The access capability file of a GPU instance (or, with ``ci_id``, of a compute instance
    in it), relative to /proc/driver/nvidia: its ``DeviceFileMinor`` is the instance's
    ``/dev/nvidia-caps/nvidia-capN`` (discovery reads it; spec mode binds it)."""
    base = f"capabilities/gpu{gpu_minor}/mig/gi{gi_id}"
    return f"{base}/access" if ci_id is None else f"{base}/ci{ci_id}/access"


def mig_global_cap_file(name: str) -> str:
    """The global MIG capability file (``config``/``monitor``), relative to /proc/driver/nvidia."""
    return f"capabilities/mig/{name}"


class MigDevice(NamedTuple):
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
    index: int  # type: ignore[assignment]  # the field shadows tuple.index, which nothing calls
    """The slot given to ``nvmlDeviceGetMigDeviceHandleByIndex``: ``<mig>`` in ``<gpu>:<mig>``."""


class Gpu(NamedTuple):
    """One physical GPU as NVML reports it."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index, which nothing calls
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


class DeviceNode(NamedTuple):
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


class Inventory(NamedTuple):
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
    mig_global_caps: Mapping[str, int] = MappingProxyType({})
    """``config``/``monitor`` -> nvidia-caps minor of the global MIG capabilities, when present."""

    def control_node(self, name: str) -> Optional[DeviceNode]:
        """The control node ``/dev/<name>``, or None when the host lacks it."""
        wanted = "/dev/" + name
        return next((node for node in self.control_nodes if node.path == wanted), None)


# Matched through re's cache, compiled on first use rather than on every import.
_BUS_ID = r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])"


def parse_bus_id(text: str) -> Optional[tuple[int, int, int, int]]:
    """(domain, bus, device, function) of a PCI address in any of NVML's 8-digit-domain form,
    sysfs' 4-digit form or the short ``07:00.0`` form (domain 0); None if it is not one."""
    match = re.fullmatch(_BUS_ID, text.strip(), re.IGNORECASE | re.ASCII)
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
