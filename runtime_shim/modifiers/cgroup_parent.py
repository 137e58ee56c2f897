"""Put containers under a configured cgroup parent such as ``ai-workload.slice``.

Only where the engine left its default parent (empty, Docker's ``system.slice:docker:<id>`` or
``/docker/<id>``); a Kubernetes pod path (``kubepods``) is moved only when config says so, since
kubelet accounts pod resources under it. A chosen policy's ``cgroup_parent`` replaces the
configured one for that container.
"""

from __future__ import annotations

from typing import Any, Optional

from runtime_shim.context import Context, Notes, Spec

DEFAULT_SYSTEMD_SLICES = frozenset({"", "system.slice"})
DEFAULT_CGROUPFS_PARENTS = frozenset({"", "docker"})


def systemd_target(current: str, parent: str, container_id: str, move_pods: bool) -> Optional[str]:
    """The new ``slice:prefix:name`` value, or None to leave ``current`` alone."""
    parts = current.split(":") if current else ["", "", ""]
    if len(parts) != 3:
        return None
    slice_, prefix, name = parts
    pod = "kubepods" in slice_
    if slice_ == parent or (pod and not move_pods) or (not pod and slice_ not in
                                                        DEFAULT_SYSTEMD_SLICES):
        return None
    return f"{parent}:{prefix or 'gpu'}:{name or container_id}"


def cgroupfs_target(current: str, parent: str, container_id: str, move_pods: bool) -> Optional[str]:
    """The new ``/parent/name`` path, or None to leave ``current`` alone."""
    parts = [p for p in current.split("/") if p]
    leaf = parts[-1] if parts else container_id
    head = parts[0] if len(parts) > 1 else ""
    pod = "kubepods" in current
    base = parent.strip("/")
    if head == base or (pod and not move_pods) or (not pod and head not in
                                                    DEFAULT_CGROUPFS_PARENTS):
        return None
    if not leaf:
        return None
    return f"/{base}/{leaf}"


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    settings = ctx.config.cgroup
    parent = settings.parent
    policy = ctx.policy(spec).policy
    if policy is not None and policy.cgroup_parent:
        parent = policy.cgroup_parent
    if not parent:
        return spec, []
    linux: Any = spec.get("linux", {})
    if not isinstance(linux, dict):
        return spec, []
    current = linux.get("cgroupsPath", "")
    if not isinstance(current, str):
        return spec, []
    target = (systemd_target if ctx.host.systemd_cgroup else cgroupfs_target)(
        current, parent, ctx.container_id, settings.move_kubernetes_pods)
    if target is None or target == current:
        return spec, []
    note = f"cgroup: parent {parent}: cgroupsPath {current or '(unset)'} -> {target}"
    return {**spec, "linux": {**linux, "cgroupsPath": target}}, [note]
