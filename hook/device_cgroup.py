"""Device cgroup (v1) access for the standalone hook, where no shim declared the nodes.

``docker run --gpus`` with stock runc, and podman's hooks.d without the shim, hand runc a
config.json that does not list the GPU nodes, so the device cgroup denies them (EPERM on open)
even once the hook has bind-mounted them. NVIDIA's legacy hook lets libnvidia-container write
``devices.allow`` itself; the standalone hook does the same, for exactly the nodes the spec's
rules leave denied. Limits, both documented: on cgroup v2 there is no ``devices.allow`` (the
runtime's eBPF program decides), so the hook refuses and names the shim as the fix; and with the
systemd cgroup driver, ``systemctl daemon-reload`` rewrites the rules — the shim path, which
declares the nodes in config.json (runtime_shim/modifiers/devices.py), has neither limit.

``allows``, ``missing`` and ``devices_dir`` are pure; ``grant`` writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.inventory import DeviceNode

ACCESS = "rw"
"""What a GPU node needs; the node is bind-mounted, so no ``m`` (mknod)."""


def allows(rules: Sequence[Any], major: int, minor: int, access: str = ACCESS) -> bool:
    """Whether OCI ``linux.resources.devices`` ``rules``, applied in order from deny-all as runc
    does, leave ``access`` to the character device ``major:minor``."""
    granted: set[str] = set()
    for rule in rules:
        if not isinstance(rule, dict) or rule.get("type", "a") not in ("a", "c"):
            continue
        if rule.get("major", -1) not in (-1, None, major):
            continue
        if rule.get("minor", -1) not in (-1, None, minor):
            continue
        bits = set(str(rule.get("access") or "rwm"))
        if rule.get("allow") is True:
            granted |= bits
        else:
            granted -= bits
    return set(access) <= granted


def missing(spec: Mapping[str, Any], nodes: Iterable[DeviceNode]) -> list[DeviceNode]:
    """The nodes the spec's device rules leave without read-write access."""
    linux = spec.get("linux")
    resources = linux.get("resources") if isinstance(linux, dict) else None
    rules = resources.get("devices") if isinstance(resources, dict) else None
    listed = rules if isinstance(rules, list) else []
    return [node for node in nodes if not allows(listed, node.major, node.minor)]


def devices_dir(proc_cgroup: str, mountinfo: str) -> Optional[str]:
    """The v1 devices cgroup directory of a process, from its ``/proc/PID/cgroup`` and our
    ``/proc/self/mountinfo``; None when the process has no v1 devices controller (cgroup v2)."""
    path = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "devices" in parts[1].split(","):
            path = parts[2]
    if path is None:
        return None
    if not path.startswith("/") or ".." in path.split("/"):
        raise ShimError("cgroup", f"devices cgroup path {one_line(repr(path), 200)} is not a "
                                  f"plain absolute path")
    for line in mountinfo.splitlines():
        mount, _, super_part = line.partition(" - ")
        fields, super_fields = mount.split(), super_part.split()
        if (len(fields) < 5 or len(super_fields) < 3 or super_fields[0] != "cgroup"
                or "devices" not in super_fields[2].split(",")):
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if root == "/":
            return mount_point.rstrip("/") + path
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return mount_point.rstrip("/") + path[len(root.rstrip("/")):]
        raise ShimError("cgroup", f"devices cgroup {path} is outside the hierarchy mounted "
                                  f"at {mount_point} (root {root})")
    raise ShimError("cgroup", "no cgroup v1 devices hierarchy is mounted here")


def grant(nodes: Sequence[DeviceNode], pid: int, proc: str = "/proc") -> str:
    """Allow read-write access to ``nodes`` in the devices cgroup of ``pid``; returns the
    cgroup directory."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8") as stream:
            proc_cgroup = stream.read()
        with open(f"{proc}/self/mountinfo", encoding="utf-8") as stream:
            mountinfo = stream.read()
    except OSError as exc:
        raise ShimError("cgroup", f"cannot read the container's cgroups: "
                                  f"{exc.strerror or exc}") from None
    directory = devices_dir(proc_cgroup, mountinfo)
    if directory is None:
        names = ", ".join(f"{node.path} ({node.major}:{node.minor})" for node in nodes)
        raise ShimError("cgroup", f"the engine did not declare {names} and cgroup v2 has no "
                                  f"devices.allow: run the container through "
                                  f"gpu-container-runtime (docker --runtime gpu; gpu-ctk runtime "
                                  f"configure), which declares them")
    target = os.path.join(directory, "devices.allow")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ShimError("cgroup", f"{target}: {exc.strerror or exc}") from None
    try:
        for node in nodes:
            os.write(fd, f"c {node.major}:{node.minor} {ACCESS}\n".encode())
    except OSError as exc:
        raise ShimError("cgroup", f"{target}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return directory


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as octal escapes (``\040``)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
