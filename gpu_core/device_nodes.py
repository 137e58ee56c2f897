"""Which host device nodes a container with a given selection needs.

Shared by the shim's devices modifier, which declares them in config.json, and the standalone
hook (``hook.compat``), which grants them in the device cgroup when no shim ran. The set follows
libnvidia-container's ``nvc_driver_mount``/``nvc_device_mount``:
- each selected GPU's ``/dev/nvidiaN``; a MIG device brings its parent's node plus the
  ``/dev/nvidia-caps/nvidia-capN`` nodes of its GPU- and compute-instance access capabilities;
- the control nodes, also for ``none`` (no GPU, but the driver libraries are mounted and
  libnvidia-container mounts the driver's nodes with them): ``nvidiactl`` always,
  ``nvidia-uvm`` and ``nvidia-uvm-tools`` with the compute libraries (the ``compute`` or the
  ``video`` capability, which brings them: ``UVM_CAPABILITIES``), ``nvidia-modeset``
  with ``display``; a control node the host lacks is skipped, as libnvidia-container does;
- for a privileged container asking for them, the global MIG ``config``/``monitor``
  capability nodes, which the hook mounts (``nvc_mig_*_global_caps_mount``);
- each IMEX channel asked for (``NVIDIA_IMEX_CHANNELS``), ``/dev/nvidia-caps-imex-channels/
  channelN``, which the host must have (``imex_channel_nodes``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gpu_core.errors import ShimError

IMEX_CHANNEL_DIR = "nvidia-caps-imex-channels"

if TYPE_CHECKING:
    from gpu_core.inventory import DeviceNode, Inventory
    from gpu_core.request import DeviceRequest
    from gpu_core.selection import Selection

UVM_CAPABILITIES = frozenset({"compute", "video"})
"""The capabilities that select the compute libraries (libnvidia-container's OPT_COMPUTE_LIBS,
which ``video`` sets too), with which the library mounts and allows the UVM nodes."""


def global_caps_of(request: DeviceRequest) -> tuple[str, ...]:
    """The global MIG capabilities a request asks for (``NVIDIA_MIG_CONFIG_DEVICES`` /
    ``NVIDIA_MIG_MONITOR_DEVICES=all``; the parser keeps them for privileged containers only)."""
    return (("config",) if request.mig_config else ()) + (
        ("monitor",) if request.mig_monitor else ())


def wanted_nodes(selection: Selection, inventory: Inventory, capabilities: Iterable[str],
                 global_caps: Iterable[str] = ()) -> list[DeviceNode]:
    """The host nodes a container with ``selection`` needs, each once, GPUs first; with
    ``global_caps`` also the ``config``/``monitor`` MIG capability nodes the hook mounts."""
    nodes: dict[str, DeviceNode] = {}
    for gpu in selection.gpus:
        _add(nodes, _gpu_node(inventory, gpu.minor, f"GPU {gpu.index}"))
    for mig in selection.mig_devices:
        what = f"MIG device {mig.parent_index}:{mig.index} ({mig.uuid})"
        parent = next(g for g in selection.parents if g.uuid == mig.parent_uuid)
        _add(nodes, _gpu_node(inventory, parent.minor, what))
        for kind, minor in (("GPU instance", mig.gi_cap_minor), ("compute instance",
                                                                 mig.ci_cap_minor)):
            node = inventory.cap_nodes.get(minor) if minor is not None else None
            if node is None:
                raise ShimError("devices", f"no {kind} access capability node for {what}"
                                + (f" (nvidia-cap{minor})" if minor is not None else ""))
            _add(nodes, node)
    for name in global_caps:
        minor = inventory.mig_global_caps.get(name)
        node = inventory.cap_nodes.get(minor) if minor is not None else None
        if node is None:
            raise ShimError("devices", f"no MIG {name} capability node on this host"
                            + (f" (nvidia-cap{minor})" if minor is not None else ""))
        _add(nodes, node)
    wanted = set(capabilities)
    controls = ["nvidiactl"]
    if wanted & UVM_CAPABILITIES:
        controls += ["nvidia-uvm", "nvidia-uvm-tools"]
    if "display" in wanted:
        controls.append("nvidia-modeset")
    for name in controls:
        control = inventory.control_node(name)
        if control is not None:
            _add(nodes, control)
    return list(nodes.values())


def mig_cap_files(selection: Selection, global_caps: Iterable[str] = ()) -> list[str]:
    """The /proc/driver/nvidia capability files (relative to it) that name the nvidia-caps
    nodes ``wanted_nodes`` declares for ``selection`` and ``global_caps``: each MIG device's
    GPU- and compute-instance ``access`` files, then ``mig/config``/``mig/monitor``. CUDA and
    nvidia-smi read them in the container to find those nodes' minors."""
    from gpu_core.inventory import mig_cap_file, mig_global_cap_file

    files: list[str] = []
    for mig in selection.mig_devices:
        parent = next(g for g in selection.parents if g.uuid == mig.parent_uuid)
        if mig.gi_cap_minor is not None:
            files.append(mig_cap_file(parent.minor, mig.gi_id))
        if mig.ci_cap_minor is not None:
            files.append(mig_cap_file(parent.minor, mig.gi_id, mig.ci_id))
    files += [mig_global_cap_file(name) for name in global_caps]
    return list(dict.fromkeys(files))


def _gpu_node(inventory: Inventory, minor: int, what: str) -> DeviceNode:
    node = inventory.gpu_nodes.get(minor)
    if node is None:
        raise ShimError("devices", f"no device node /dev/nvidia{minor} on this host for {what}")
    return node


def _add(nodes: dict[str, DeviceNode], node: DeviceNode) -> None:
    nodes.setdefault(node.path, node)


def imex_channel_nodes(dev_root: str, channels: Iterable[str]) -> list[DeviceNode]:
    """The host's node of each IMEX channel (``channels`` are the request's numbers); a channel
    the host lacks is a one-line error, since the container would start without it."""
    from gpu_core.inventory import DeviceNode

    nodes: list[DeviceNode] = []
    for channel in channels:
        name = f"{IMEX_CHANNEL_DIR}/channel{int(channel)}"
        host_path = os.path.join(dev_root, name)
        try:
            info = os.stat(host_path)
        except OSError:
            info = None
        if info is None or not stat.S_ISCHR(info.st_mode):
            raise ShimError("devices", f"no IMEX channel node /dev/{name} on this host "
                                       f"(NVIDIA_IMEX_CHANNELS asked for channel {channel})")
        nodes.append(DeviceNode(path="/dev/" + name, host_path=host_path,
                                major=os.major(info.st_rdev), minor=os.minor(info.st_rdev),
                                file_mode=stat.S_IMODE(info.st_mode), uid=info.st_uid,
                                gid=info.st_gid))
    return nodes
