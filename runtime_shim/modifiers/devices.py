"""Declare the selected GPUs' device nodes in config.json (README §Where we
differ from NVIDIA, and why).

Each node goes into ``linux.devices`` (the runtime creates it) and gets an allow rule in
``linux.resources.devices``, so the runtime itself grants access: device cgroup v1, the eBPF
program on v2 and systemd's ``DeviceAllow=``. systemd rewrites a unit's device policy from what
the runtime told it on every ``daemon-reload``; access added behind the runtime's back (as
libnvidia-container's cgroup writes are) is lost then, access declared here is not.

Which nodes: ``gpu_core.device_nodes.wanted_nodes`` (shared with the standalone hook), plus the
IMEX channels the request names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gpu_core.device_nodes import global_caps_of, imex_channel_nodes, wanted_nodes
from gpu_core.errors import ShimError
from runtime_shim.context import Context, Notes, Spec

if TYPE_CHECKING:
    from gpu_core.inventory import DeviceNode

ACCESS = "rw"
"""Read and write; the runtime creates the nodes, so the container never needs ``m`` (mknod)."""


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    if not ctx.gpu:
        return spec, []
    if ctx.injected is not None:
        # The engine's CDI injection decides the devices; adding ours would widen it
        # (README §Beside CDI and DRA).
        return spec, [f"devices: CDI-injected by the engine ({ctx.injected.describe()}): "
                      "not widened"]
    if ctx.request is None:
        return spec, []
    inventory = ctx.inventory()
    selection = ctx.selection(ctx.request)
    nodes = wanted_nodes(selection, inventory, ctx.request.capabilities,
                         global_caps_of(ctx.request))
    if ctx.request.imex_channels:
        dev_root = ctx.config.host.dev_root
        nodes += imex_channel_nodes(dev_root, ctx.request.imex_channels)
    return declare(spec, nodes)


def declare(spec: Spec, nodes: Iterable[DeviceNode]) -> tuple[Spec, Notes]:
    """``spec`` with a ``linux.devices`` entry and an allow rule for each node it lacks; the
    same object when it already has them all. Entries of other devices are kept, in order."""
    linux = _field(spec, "linux", dict, "linux")
    resources = _field(linux, "resources", dict, "linux.resources")
    devices = _field(linux, "devices", list, "linux.devices")
    rules = _field(resources, "devices", list, "linux.resources.devices")
    declared = {entry.get("path") for entry in devices if isinstance(entry, dict)}
    new_devices: list[dict[str, Any]] = []
    new_rules: list[dict[str, Any]] = []
    added: list[str] = []
    for node in nodes:
        changed = False
        if node.path not in declared:
            declared.add(node.path)
            new_devices.append({"path": node.path, "type": "c", "major": node.major,
                                "minor": node.minor, "fileMode": node.file_mode,
                                "uid": node.uid, "gid": node.gid})
            changed = True
        if not any(_allows(rule, node) for rule in [*rules, *new_rules]):
            new_rules.append({"allow": True, "type": "c", "major": node.major,
                              "minor": node.minor, "access": ACCESS})
            changed = True
        if changed:
            added.append(f"{node.path} ({node.major}:{node.minor})")
    if not added:
        return spec, []
    new_linux = dict(linux)
    if new_devices:
        new_linux["devices"] = [*devices, *new_devices]
    if new_rules:
        new_linux["resources"] = {**resources, "devices": [*rules, *new_rules]}
    return {**spec, "linux": new_linux}, ["devices: added " + ", ".join(added)]


def _allows(rule: Any, node: DeviceNode) -> bool:
    """Whether ``rule`` is already an allow rule for exactly this node with at least rw."""
    return (isinstance(rule, dict) and rule.get("allow") is True and rule.get("type") == "c"
            and rule.get("major") == node.major and rule.get("minor") == node.minor
            and set(ACCESS) <= set(str(rule.get("access", ""))))


def _field(parent: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """``parent[key]`` (empty when absent), which must be of ``kind``: a spec the runtime would
    reject anyway is reported here rather than rewritten."""
    value = parent.get(key, kind())
    if not isinstance(value, kind):
        raise ShimError("devices", f"config.json {where} is {type(value).__name__}, "
                        f"not {'an object' if kind is dict else 'an array'}")
    return value
