"""Which host nodes a container needs: the global MIG capabilities for privileged requests."""

from __future__ import annotations

import dataclasses

import pytest

from hook.device_nodes import global_caps_of, wanted_nodes
from hook.discovery import Inventory
from hook.errors import ShimError
from hook.request import DeviceRequest
from hook.selection import select
from hook.testing import CAPS_MAJOR, char_node, fake_inventory

CAPS = frozenset({"compute", "utility"})


def with_global_caps(config_minor: int = 1, monitor_minor: int = 2) -> Inventory:
    inventory = fake_inventory(gpus=2, mig={0: ["1g.10gb"]})
    nodes = dict(inventory.cap_nodes)
    for minor in (config_minor, monitor_minor):
        nodes[minor] = char_node(f"/dev/nvidia-caps/nvidia-cap{minor}", CAPS_MAJOR, minor, 0o444)
    return dataclasses.replace(inventory, cap_nodes=nodes,
                               mig_global_caps={"config": config_minor,
                                                "monitor": monitor_minor})


def request(mig_config: tuple[str, ...] = (), mig_monitor: tuple[str, ...] = ()) -> DeviceRequest:
    return DeviceRequest(devices=("0",), capabilities=CAPS, privileged=True,
                         mig_config=mig_config, mig_monitor=mig_monitor)


@pytest.mark.parametrize(("mig", "wanted"), [
    ({}, ()),
    ({"mig_config": ("all",)}, ("config",)),
    ({"mig_monitor": ("all",)}, ("monitor",)),
    ({"mig_config": ("all",), "mig_monitor": ("all",)}, ("config", "monitor")),
])
def test_global_caps_follow_the_request(mig: dict[str, tuple[str, ...]],
                                        wanted: tuple[str, ...]) -> None:
    """NVIDIA_MIG_CONFIG_DEVICES / NVIDIA_MIG_MONITOR_DEVICES name the global capabilities."""
    assert global_caps_of(request(**mig)) == wanted


def test_global_cap_nodes_are_declared() -> None:
    """A privileged MIG-config request gets the config and monitor capability nodes too, so the
    runtime's device cgroup allows what the hook mounts."""
    inventory = with_global_caps()
    req = request(mig_config=("all",), mig_monitor=("all",))
    paths = [n.path for n in wanted_nodes(select(req, inventory), inventory, CAPS,
                                          global_caps_of(req))]
    assert "/dev/nvidia-caps/nvidia-cap1" in paths and "/dev/nvidia-caps/nvidia-cap2" in paths


def test_missing_global_cap_node_is_an_error() -> None:
    """A host without the capability node fails the create in one line, naming it."""
    inventory = fake_inventory(gpus=1)
    req = request(mig_config=("all",))
    with pytest.raises(ShimError, match="no MIG config capability node"):
        wanted_nodes(select(req, inventory), inventory, CAPS, global_caps_of(req))
