"""The simulated host's kernel-facing files: device nodes (DIR/dev), the sysfs stand-in
(DIR/sys) and DIR/proc, each first as plain data, then written by ``write_*``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

from simulator import driver_tree, profiles
from simulator.errors import SimulatorError, one_line
from simulator.header import CAPS_MAJOR, NVIDIA_MAJOR, UVM_MAJOR
from simulator.topology import Topology


class Node(NamedTuple):
    """One character device node: path under DIR/dev, numbers and permission bits."""

    path: str
    major: int
    minor: int
    mode: int


def device_nodes(topology: Topology) -> list[Node]:
    """Every node the NVIDIA driver would create for ``topology``, with the modes a real host
    gives them (the MIG config capability is root-only)."""
    nodes = [
        Node("nvidiactl", NVIDIA_MAJOR, 255, 0o666),
        Node("nvidia-modeset", NVIDIA_MAJOR, 254, 0o666),
        Node("nvidia-uvm", UVM_MAJOR, 0, 0o666),
        Node("nvidia-uvm-tools", UVM_MAJOR, 1, 0o666),
    ]
    nodes += [Node(f"nvidia{gpu['minor']}", NVIDIA_MAJOR, gpu["minor"], 0o666)
              for gpu in topology["gpus"]]
    nodes.append(Node(f"nvidia-caps/nvidia-cap{profiles.CONFIG_CAP_MINOR}", CAPS_MAJOR,
                      profiles.CONFIG_CAP_MINOR, 0o400))
    nodes.append(Node(f"nvidia-caps/nvidia-cap{profiles.MONITOR_CAP_MINOR}", CAPS_MAJOR,
                      profiles.MONITOR_CAP_MINOR, 0o444))
    for gpu in topology["gpus"]:
        for device in gpu["mig"]["devices"]:
            for minor in (device["gi_cap_minor"], device["ci_cap_minor"]):
                nodes.append(Node(f"nvidia-caps/nvidia-cap{minor}", CAPS_MAJOR, minor, 0o444))
    return nodes


def proc_devices() -> str:
    """/proc/devices as the kernel writes it, with the majors the simulated driver registered."""
    return (f"Character devices:\n{NVIDIA_MAJOR} nvidia-frontend\n{CAPS_MAJOR} nvidia-caps\n"
            f"{UVM_MAJOR} nvidia-uvm\n\nBlock devices:\n")


def proc_files(topology: Topology) -> dict[str, str]:
    """DIR/proc: /proc/devices plus the driver's /proc/driver files (the same ones the driver
    tree has, for readers that take DIR as the host root)."""
    files = {"proc/devices": proc_devices()}
    files.update(driver_tree.proc_files(topology))
    return files


def sys_files(topology: Topology) -> dict[str, str]:
    """DIR/sys: each GPU's PCI function (NUMA node, ids, class) and the NUMA nodes' CPUs."""
    files: dict[str, str] = {}
    for gpu in topology["gpus"]:
        pci = f"sys/bus/pci/devices/{gpu['bus_id'][4:].lower()}"
        files[f"{pci}/numa_node"] = f"{gpu['numa_node']}\n"
        files[f"{pci}/vendor"] = "0x10de\n"
        files[f"{pci}/device"] = f"0x{gpu['pci_device_id'] >> 16:04x}\n"
        files[f"{pci}/class"] = "0x030200\n"
    nodes = topology["numa_nodes"]
    for node in nodes:
        files[f"sys/devices/system/node/node{node['id']}/cpulist"] = f"{node['cpus']}\n"
    ids = sorted(node["id"] for node in nodes)
    files["sys/devices/system/node/online"] = ",".join(str(node) for node in ids) + "\n"
    files["sys/module/nvidia/version"] = f"{topology['driver_version']}\n"
    return files


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> text) under ``root``."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def write_nodes(dev_dir: Path, nodes: list[Node]) -> None:
    """Create ``nodes`` under ``dev_dir``; needs CAP_MKNOD (root)."""
    for node in nodes:
        path = dev_dir / node.path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mknod(path, stat.S_IFCHR | node.mode, os.makedev(node.major, node.minor))
        except PermissionError:
            raise SimulatorError("simulate", one_line(
                f"creating device node {path} needs root (CAP_MKNOD): run gpu-ctk simulate as "
                f"root")) from None
        os.chmod(path, node.mode)
