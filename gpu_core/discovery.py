"""GPU discovery: what NVML, the host's device nodes and the driver's capability files say.

``discover`` is the I/O edge (NVML through ``gpu_core.nvml_query``, ``os.stat`` under
``dev_root``, files under ``driver_root`` and ``sysfs_root``); everything it returns is a frozen
value (``gpu_core.inventory``) that selection and the modifiers consume without touching the host
again.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from typing import TYPE_CHECKING, Optional

from gpu_core.inventory import (
    CONTROL_NODES,
    DeviceNode,
    Gpu,
    Inventory,
    MigDevice,
    mig_cap_file,
    mig_global_cap_file,
    sysfs_bus_id,
)
from gpu_core.nvml_query import query_nvml

if TYPE_CHECKING:
    from gpu_core.config import Config


def discover_from_config(config: Config) -> Inventory:
    """Discover with the NVML library and host roots named by ``config``."""
    host = config.host
    return discover(nvml_library=config.nvml.library, dev_root=host.dev_root,
                    driver_root=host.driver_root, sysfs_root=host.sysfs_root)


def discover(nvml_library: str, dev_root: str, driver_root: str, sysfs_root: str) -> Inventory:
    """Query NVML (``nvml_library`` or the default ``libnvidia-ml.so.1``) and the host roots."""
    driver_version, cuda_version, raw_gpus = query_nvml(nvml_library)
    proc_dir = os.path.join(driver_root, "proc/driver/nvidia")
    majors = char_majors(dev_root, driver_root)
    gpus: list[Gpu] = []
    cap_nodes: dict[int, DeviceNode] = {}
    for raw in raw_gpus:
        migs = []
        for mig in raw.pop("mig_devices"):
            gi_cap = _read_cap_access(
                os.path.join(proc_dir, mig_cap_file(raw["minor"], mig["gi_id"])))
            ci_cap = _read_cap_access(
                os.path.join(proc_dir, mig_cap_file(raw["minor"], mig["gi_id"], mig["ci_id"])))
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
        cap = _read_cap_access(os.path.join(proc_dir, mig_global_cap_file(name)))
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


# Matched through re's cache, compiled on first use: only a MIG host reads capability files.
_CAP_LINE = r"^[ \t]*(DeviceFileMinor|DeviceFileMode)[ \t]*:[ \t]*(\d{1,9})[ \t]*$"


def _read_cap_access(path: str) -> Optional[tuple[int, int]]:
    """(minor, mode) from a capability file in the kernel's ``DeviceFileMinor: N`` format."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(4096)
    except OSError:
        return None
    fields = dict(re.findall(_CAP_LINE, text, re.MULTILINE | re.ASCII))
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
