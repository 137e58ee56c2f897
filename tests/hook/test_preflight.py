"""hook.preflight: the checks the hook and gpu-ctk share before libnvidia-container runs."""

from __future__ import annotations

import pytest

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest
from gpu_core.selection import select
from gpu_core.testing import fake_inventory
from hook.preflight import check_requirements, host_ldconfig


def test_the_hosts_ldconfig_is_accepted() -> None:
    config = config_mod.parse("libnvidia_container: {ldconfig: '@/sbin/ldconfig'}\n", "t.yaml")
    assert host_ldconfig(config) == "@/sbin/ldconfig"


def test_a_requirement_the_host_misses_is_refused() -> None:
    inventory = fake_inventory(1)
    request = DeviceRequest(devices=("0",), capabilities=frozenset({"utility"}),
                            requirements=("cuda>=99.0",))
    with pytest.raises(ShimError):
        check_requirements(request, inventory, select(request, inventory))
