"""gpu_core.nvml_query's pure part: MIG profile names as NVIDIA spells them (the NVML reading
itself runs against simulated hosts in test_discovery.py)."""

from __future__ import annotations

import pytest

from gpu_core.nvml_query import profile_name
from simulator import profiles


@pytest.mark.parametrize(("table", "total_mib"), [("a100-80gb", 81920), ("a100-40gb", 40960)])
def test_profile_name_derivation_matches_nvidia_names(table: str, total_mib: int) -> None:
    """Derived <slices>g.<GB>gb names equal NVIDIA's for every A100 profile."""
    for profile in profiles.TABLES[table]:
        suffix = "+me" if profile.name.endswith("+me") else ""
        derived = profile_name(profile.slice_count, profile.memory_mib, total_mib * 1024 ** 2,
                               suffix)
        assert derived == profile.name


def test_profile_name_without_gpu_memory_rounds_instance_memory() -> None:
    """With the GPU's total unknown, the instance's own memory is rounded to GB."""
    assert profile_name(3, 40192, 0) == "3g.39gb"
