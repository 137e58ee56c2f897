"""The CPUs and memory nodes a new container can actually get on this host.

NUMA placement (``runtime_shim.modifiers.numa``) must stay inside them: runc and crun fail the
whole start (``write .../cpuset.cpus: numerical result out of range``) when ``linux.resources.cpu``
names a CPU the host has offline, or one outside the cpuset of the cgroup the container lands in
(``isolcpus``, a slice with ``AllowedCPUs=``, the kubelet's reserved CPUs). Two limits, both read
from the real host, never from the simulated sysfs root (that one only describes the GPUs' nodes):

* the host's online CPUs and memory nodes (``/sys/devices/system/{cpu,node}/online``);
* the effective cpuset of the parent cgroup the container will land in, for cgroup v1 and v2 and
  for runc's systemd and cgroupfs drivers. A parent that does not exist yet inherits from its
  nearest existing ancestor, so the walk goes up to the first cgroup that has the file.

``parent_path`` and ``slice_path`` are pure; ``read_available`` reads at the edge.
"""

import os
import posixpath
from typing import NamedTuple, Optional

from gpu_core import numa

SYS_ROOT = "/sys"
CGROUP_ROOT = "/sys/fs/cgroup"


class Available(NamedTuple):
    """What a container may be given; None where nothing limits it (or nothing could be read).
    ``where`` says what the limits came from, for the placement note."""

    cpus: Optional[frozenset[int]] = None
    mems: Optional[frozenset[int]] = None
    where: str = ""


def slice_path(name: str) -> str:
    """systemd's cgroup directory of slice ``name``: ``a-b.slice`` -> ``/a.slice/a-b.slice``;
    ``-.slice`` (and an empty name) is the root."""
    if name in ("", "-.slice") or not name.endswith(".slice"):
        return "/"
    stem = name[: -len(".slice")]
    parts = stem.split("-")
    return "/" + "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def parent_path(cgroups_path: Optional[str], systemd: bool, own: str) -> str:
    """The cgroup directory (from the hierarchy's root) the container's cgroup will be created
    in, as runc resolves ``linux.cgroupsPath``: with the systemd driver ``slice:prefix:name``
    lands in the slice (``system.slice`` when unset); with cgroupfs an absolute path in its
    directory, a relative path or none (runc then uses the container id) below ``own``, the
    runtime's own cgroup."""
    path = cgroups_path or ""
    if systemd:
        if not path:
            return slice_path("system.slice")
        parts = path.split(":")
        if len(parts) == 3:
            return slice_path(parts[0] or "system.slice")
    if path.startswith("/"):
        return posixpath.dirname(posixpath.normpath(path)) or "/"
    below = posixpath.normpath(posixpath.join("/", own.lstrip("/")))
    return posixpath.dirname(posixpath.normpath(posixpath.join(below, path))) if path else below


def effective(hierarchy: str, version: int, parent: str
              ) -> tuple[Optional[frozenset[int]], Optional[frozenset[int]], str]:
    """The effective cpus and mems of ``parent`` (or its nearest ancestor with the files) in the
    cpuset hierarchy mounted at ``hierarchy``, and which cgroup they came from."""
    names = (("cpuset.cpus.effective", "cpuset.mems.effective") if version == 2
             else ("cpuset.effective_cpus", "cpuset.effective_mems"))
    current = posixpath.normpath("/" + parent.lstrip("/"))
    while True:
        directory = os.path.join(hierarchy, current.lstrip("/"))
        cpus = numa.read_ids(os.path.join(directory, names[0]))
        mems = numa.read_ids(os.path.join(directory, names[1]))
        if cpus is not None and mems is not None:
            return cpus, mems, current
        if current == "/":
            return None, None, ""
        current = posixpath.dirname(current)


def read_available(cgroups_path: Optional[str], systemd: bool, sys_root: str = SYS_ROOT,
                   cgroup_root: str = CGROUP_ROOT, proc: str = "/proc/self") -> Available:
    """The host's online CPUs and memory nodes intersected with the effective cpuset of the
    parent cgroup a container with ``cgroups_path`` lands in."""
    from runtime_shim import io_weight

    cpus = numa.read_ids(os.path.join(sys_root, "devices/system/cpu/online"))
    mems = numa.read_ids(os.path.join(sys_root, "devices/system/node/online"))
    where = [f"host online cpus {_shown(cpus)} mems {_shown(mems)}"]
    own = io_weight.own_cgroups(proc)
    v1 = os.path.join(cgroup_root, "cpuset")
    if os.path.isfile(os.path.join(v1, "cpuset.effective_cpus")):
        version, hierarchy, mine = 1, v1, own.get("cpuset", "/")
    elif os.path.isfile(os.path.join(cgroup_root, "cgroup.controllers")):
        version, hierarchy, mine = 2, cgroup_root, own.get("", "/")
    else:
        return Available(cpus, mems, where[0])
    parent = parent_path(cgroups_path, systemd, mine)
    limit_cpus, limit_mems, found = effective(hierarchy, version, parent)
    if found:
        cpus = limit_cpus if cpus is None else cpus & (limit_cpus or frozenset())
        mems = limit_mems if mems is None else mems & (limit_mems or frozenset())
        where.append(f"cgroup v{version} {found} cpus {_shown(limit_cpus)} mems "
                     f"{_shown(limit_mems)}")
    return Available(cpus, mems, ", ".join(where))


def _shown(ids: Optional[frozenset[int]]) -> str:
    if ids is None:
        return "unknown"
    return numa.format_ids(ids) or "none"
