"""Facts about the shim's own process, read from /proc at the edge."""

from __future__ import annotations

import functools

from runtime_shim.context import HostFacts

CAP_SYS_RESOURCE = 24


def own_oom_score_adj(proc: str = "/proc/self") -> int:
    with open(f"{proc}/oom_score_adj", encoding="ascii") as stream:
        return int(stream.read().strip())


def has_capability(bit: int, proc: str = "/proc/self") -> bool:
    """True when ``bit`` is in the effective capability set."""
    with open(f"{proc}/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def read_facts(systemd_cgroup: bool, proc: str = "/proc/self", runtime: str = "") -> HostFacts:
    """This process's facts; the cpuset a container can get is read only when NUMA placement
    asks (runtime_shim.cpuset), with this call's cgroup driver."""
    from runtime_shim import cpuset, io_weight

    return HostFacts(oom_score_adj=own_oom_score_adj(proc),
                     cap_sys_resource=has_capability(CAP_SYS_RESOURCE, proc),
                     systemd_cgroup=systemd_cgroup,
                     io_weight=io_weight.probe(runtime, proc=proc),
                     available=functools.partial(cpuset.read_available, systemd=systemd_cgroup,
                                                 proc=proc))
