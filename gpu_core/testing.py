"""Test fakes that ship with the package: in-memory inventories shaped like real hosts.

Tests everywhere build hosts here instead of hand-writing dataclasses, so a new field is added in
one place. Nothing on the shim or hook start path imports this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Optional

from gpu_core.inventory import NV_MAJOR, DeviceNode, Gpu, Inventory, MigDevice

UVM_MAJOR = 510
CAPS_MAJOR = 509

# NVML GPU-instance profiles of an A100-SXM4-80GB: name -> (profile id, slices, memory MiB).
# The ids are what nvmlGpuInstanceGetInfo reports; they differ from the enum index on purpose.
A100_80GB_PROFILES: Mapping[str, tuple[int, int, int]] = {
    "1g.10gb": (19, 1, 9728),
    "1g.10gb+me": (20, 1, 9728),
    "1g.20gb": (15, 1, 19968),
    "2g.20gb": (14, 2, 19968),
    "3g.40gb": (9, 3, 40192),
    "4g.40gb": (5, 4, 40192),
    "7g.80gb": (0, 7, 81152),
}

DGX_BUSES = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)

_NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def gpu_uuid(index: int) -> str:
    """The fake GPU ``index``'s UUID (stable across runs)."""
    return f"GPU-{uuid.uuid5(_NAMESPACE, f'gpu{index}')}"


def mig_uuid(gpu: int, gi: int, ci: int) -> str:
    """The fake MIG device's UUID (stable across runs)."""
    return f"MIG-{uuid.uuid5(_NAMESPACE, f'gpu{gpu}/gi{gi}/ci{ci}')}"


def cap_minor(gpu_minor: int, gi: int, ci: Optional[int] = None) -> int:
    """The nvidia-caps minor the driver gives ``gpu<minor>/gi<gi>[/ci<ci>]/access``: 1 and 2 are
    the global config/monitor caps, then 9 per GPU instance (itself and 8 compute instances),
    15 instances per GPU (the layout of /proc/driver/nvidia-caps/mig-minors)."""
    base = 3 + gpu_minor * 135 + gi * 9
    return base if ci is None else base + 1 + ci


def bus_id(index: int) -> str:
    """The fake GPU ``index``'s PCI address in NVML's form: a DGX A100's for the first eight."""
    if index < len(DGX_BUSES):
        return f"00000000:{DGX_BUSES[index]:02X}:00.0"
    domain, bus = divmod(index - len(DGX_BUSES), 64)
    return f"{domain:08X}:{0xC0 + bus:02X}:00.0"


def char_node(path: str, major: int, minor: int, mode: int = 0o666) -> DeviceNode:
    """A root-owned character device at container path ``path``, host path the same."""
    return DeviceNode(path=path, host_path=path, major=major, minor=minor, file_mode=mode,
                      uid=0, gid=0)


def fake_inventory(
    gpus: int = 8,
    mig: Optional[Mapping[int, Sequence[str]]] = None,
    *,
    name: str = "NVIDIA A100-SXM4-80GB",
    brand: str = "Nvidia",
    cc: str = "8.0",
    memory_bytes: int = 80 * 1024 ** 3,
    driver_version: str = "535.104.05",
    cuda_version: str = "12.2",
    controls: Sequence[str] = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"),
    missing_gpu_nodes: Sequence[int] = (),
    numa: bool = True,
) -> Inventory:
    """A host of ``gpus`` identical GPUs (index = minor, DGX bus ids); ``mig`` maps a GPU index to
    the profiles of its MIG devices (that GPU is in MIG mode, one compute instance per GPU
    instance, slots and GI ids counting from 0 and 1); nodes listed exist unless named missing."""
    mig = mig or {}
    inventory_gpus = []
    cap_nodes = {}
    for index in range(gpus):
        migs = []
        for slot, profile in enumerate(mig.get(index, ())):
            profile_id, _slices, memory = A100_80GB_PROFILES[profile]
            gi = slot + 1
            migs.append(MigDevice(
                uuid=mig_uuid(index, gi, 0), parent_uuid=gpu_uuid(index), parent_index=index,
                gi_id=gi, ci_id=0, profile=profile, profile_id=profile_id, memory_mib=memory,
                gi_cap_minor=cap_minor(index, gi), ci_cap_minor=cap_minor(index, gi, 0),
                index=slot))
            for minor in (cap_minor(index, gi), cap_minor(index, gi, 0)):
                cap_nodes[minor] = char_node(f"/dev/nvidia-caps/nvidia-cap{minor}", CAPS_MAJOR,
                                             minor, 0o444)
        inventory_gpus.append(Gpu(
            index=index, uuid=gpu_uuid(index), minor=index, bus_id=bus_id(index),
            name=name, brand=brand, cc=cc, memory_bytes=memory_bytes, mig_mode=index in mig,
            mig_devices=tuple(migs), numa_node=(index * 2 // max(gpus, 1)) if numa else None))
    majors = {"nvidiactl": (NV_MAJOR, 255), "nvidia-modeset": (NV_MAJOR, 254),
              "nvidia-uvm": (UVM_MAJOR, 0), "nvidia-uvm-tools": (UVM_MAJOR, 1)}
    control_nodes = tuple(char_node("/dev/" + c, *majors[c]) for c in
                          ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
                          if c in controls)
    gpu_nodes = {i: char_node(f"/dev/nvidia{i}", NV_MAJOR, i) for i in range(gpus)
                 if i not in missing_gpu_nodes}
    return Inventory(driver_version=driver_version, cuda_version=cuda_version,
                     gpus=tuple(inventory_gpus), control_nodes=control_nodes,
                     gpu_nodes=gpu_nodes, cap_nodes=cap_nodes)
