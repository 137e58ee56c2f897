"""Facts about the shim's own process: the cpuset reader it hands NUMA placement."""

from __future__ import annotations

from pathlib import Path

from runtime_shim import host
from runtime_shim.cpuset import Available


def test_facts_carry_a_cpuset_reader_for_this_calls_driver(tmp_path: Path) -> None:
    """read_facts gives NUMA placement a reader of what a container can get (read on demand),
    which answers for a cgroups path."""
    facts = host.read_facts(systemd_cgroup=True)
    assert facts.systemd_cgroup is True and facts.available is not None
    assert isinstance(facts.available("/ai-workload.slice/c1"), Available)
