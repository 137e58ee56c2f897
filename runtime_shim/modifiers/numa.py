"""Place a GPU container on its GPUs' NUMA node(s): ``linux.resources.cpu.cpus`` and ``.mems``.

Only for a policy with ``numa`` on, and only ever narrowing: the result is the nodes' CPUs and
memory nodes intersected with any cpuset the engine already set (Kubernetes' CPU manager, Docker's
``--cpuset-cpus``). When nothing would be left, or a GPU's node is unknown (one-node hosts say
-1), the cpuset stays as it was and a note says why — placement is an optimisation, never a reason
for a container to fail or to get CPUs it was not given.

For a spec the engine injected GPUs into from a CDI spec (runtime_shim.cdi_injection) the GPUs are
those whose minor numbers the injected ``/dev/nvidia<N>`` nodes carry, whatever the request says;
there a failed discovery only skips placement, as the shim needs it for nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from gpu_core import numa
from gpu_core.errors import ShimError
from runtime_shim.context import Context, Notes, Spec
from runtime_shim.cpuset import Available
from runtime_shim.spec_tree import get_in, set_in

if TYPE_CHECKING:
    from gpu_core.inventory import Gpu

STAGE = "numa"
CPUS = ("linux", "resources", "cpu", "cpus")
MEMS = ("linux", "resources", "cpu", "mems")


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    if not ctx.gpu:
        return spec, []
    policy = ctx.policy(spec).policy
    if policy is None or not policy.numa:
        return spec, []
    prefix = f"numa: policy {policy.name}"
    if ctx.injected is not None:
        if not ctx.injected.gpus_present:
            return spec, []
        try:
            inventory = ctx.inventory()
        except ShimError as error:  # the engine gave the GPUs: placement alone is lost
            return spec, [f"{prefix}: placement skipped: {error.stage}: {error.cause}"]
        gpus, absent = present_gpus(ctx.injected.gpu_minors, inventory.gpus)
        if absent:
            return spec, [f"{prefix}: placement skipped: no GPU of this host has the minor "
                          f"number of {', '.join(f'/dev/nvidia{m}' for m in absent)}"]
    elif ctx.request is not None:
        gpus = ctx.selection(ctx.request).checked_gpus
    else:
        return spec, []
    if not gpus:
        return spec, []
    unknown = [gpu.index for gpu in gpus if gpu.numa_node is None]
    if unknown:
        return spec, [f"{prefix}: placement skipped: NUMA node of {_gpus(unknown)} unknown"]
    gpu_nodes = {gpu.index: gpu.numa_node for gpu in gpus if gpu.numa_node is not None}
    sysfs_root = ctx.config.host.sysfs_root
    node_cpus = {node: numa.node_cpus(sysfs_root, node) for node in sorted(set(gpu_nodes.values()))}
    available = None
    if ctx.host.available is not None:
        cgroups_path: Any = get_in(spec, ("linux", "cgroupsPath"))
        available = ctx.host.available(cgroups_path if isinstance(cgroups_path, str) else None)
    return place(spec, gpu_nodes, node_cpus, prefix, available)


def present_gpus(minors: Sequence[int], gpus: Sequence[Gpu]
                 ) -> tuple[tuple[Gpu, ...], tuple[int, ...]]:
    """The GPUs whose device node minors the engine declared (``/dev/nvidia<N>`` entries of a
    CDI injection), in ``minors`` order, and the minors no GPU of the inventory has."""
    by_minor = {gpu.minor: gpu for gpu in gpus}
    return (tuple(by_minor[m] for m in minors if m in by_minor),
            tuple(m for m in minors if m not in by_minor))


def place(spec: Spec, gpu_nodes: Mapping[int, int],
          node_cpus: Mapping[int, Optional[frozenset[int]]], prefix: str,
          available: Optional[Available] = None) -> tuple[Spec, Notes]:
    """The pure part: ``spec`` with cpus/mems narrowed to the nodes of ``gpu_nodes`` (GPU index ->
    node), whose CPUs ``node_cpus`` gives (None: sysfs does not describe the node), and kept
    inside what the container can get (``available``: online CPUs and memory nodes, the parent
    cgroup's cpuset)."""
    nodes = frozenset(gpu_nodes.values())
    where = f"{_gpus(sorted(gpu_nodes))} on node{'s' if len(nodes) > 1 else ''} " \
        f"{numa.format_ids(nodes)}"
    missing = [node for node in sorted(nodes) if node_cpus.get(node) is None]
    if missing:
        return spec, [f"{prefix}: placement skipped: no cpulist for NUMA node "
                      f"{numa.format_ids(missing)} under the sysfs root"]
    cpus = frozenset().union(*(node_cpus[node] or () for node in nodes))
    mems, fitted = nodes, ""
    if available is not None:
        fit_cpus = cpus if available.cpus is None else cpus & available.cpus
        fit_mems = mems if available.mems is None else mems & available.mems
        if not fit_cpus or not fit_mems:
            return spec, [f"{prefix}: placement skipped: {where} (cpus {_shown(cpus)}, mems "
                          f"{_shown(mems)}) outside what the container can get here "
                          f"({available.where}), left as it was"]
        if (fit_cpus, fit_mems) != (cpus, mems):
            fitted = f" (narrowed from cpus {_shown(cpus)}, mems {_shown(mems)} to what the " \
                f"container can get here: {available.where})"
        cpus, mems = fit_cpus, fit_mems
    try:
        have_cpus = _existing(spec, CPUS)
        have_mems = _existing(spec, MEMS)
    except numa.IdListError as exc:
        return spec, [f"{prefix}: placement skipped: the engine's cpuset is unreadable ({exc})"]
    want_cpus = cpus if have_cpus is None else cpus & have_cpus
    want_mems = mems if have_mems is None else mems & have_mems
    if not want_cpus or not want_mems:
        return spec, [f"{prefix}: placement skipped: {where} (cpus {_shown(cpus)}, mems "
                      f"{_shown(mems)}) share nothing with the engine's cpuset (cpus "
                      f"{_shown(have_cpus)}, mems {_shown(have_mems)}); left as it was"]
    result = spec
    changes = []
    for path, have, want in ((CPUS, have_cpus, want_cpus), (MEMS, have_mems, want_mems)):
        if have != want:
            result = set_in(result, path, numa.format_ids(want), STAGE)
            narrowed = "" if have is None else f" (within the engine's {numa.format_ids(have)})"
            changes.append(f"linux.resources.cpu.{path[-1]} {numa.format_ids(want)}{narrowed}")
    if not changes:
        return spec, []
    return result, [f"{prefix}: {where}: " + ", ".join(changes) + fitted]


def _existing(spec: Spec, path: tuple[str, ...]) -> Optional[frozenset[int]]:
    """The ids an engine already set at ``path``; None when unset or empty (no restriction)."""
    value: Any = get_in(spec, path)
    if value is None:
        return None
    if not isinstance(value, str):
        raise numa.IdListError(f"{'.'.join(path)} is {type(value).__name__}, not a string")
    ids = numa.parse_ids(value)
    return ids if value.strip() else None


def _gpus(indices: list[int]) -> str:
    return f"GPU{'s' if len(indices) > 1 else ''} {numa.format_ids(indices)}"


def _shown(ids: Optional[frozenset[int]]) -> str:
    if ids is None:
        return "unset"
    return numa.format_ids(ids) or "none"
