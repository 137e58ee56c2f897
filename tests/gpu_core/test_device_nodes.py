"""Which host nodes a container needs: the global MIG capabilities for privileged requests,
the IMEX channels."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpu_core.device_nodes import (
    IMEX_CHANNEL_DIR,
    global_caps_of,
    imex_channel_nodes,
    mig_cap_files,
    wanted_nodes,
)
from gpu_core.errors import ShimError
from gpu_core.inventory import Inventory
from gpu_core.request import DeviceRequest
from gpu_core.selection import select
from gpu_core.testing import CAPS_MAJOR, cap_minor, char_node, fake_inventory

CAPS = frozenset({"compute", "utility"})


def with_global_caps(config_minor: int = 1, monitor_minor: int = 2) -> Inventory:
    inventory = fake_inventory(gpus=2, mig={0: ["1g.10gb"]})
    nodes = dict(inventory.cap_nodes)
    for minor in (config_minor, monitor_minor):
        nodes[minor] = char_node(f"/dev/nvidia-caps/nvidia-cap{minor}", CAPS_MAJOR, minor, 0o444)
    return inventory._replace(cap_nodes=nodes,
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


def test_mig_cap_files_are_those_of_the_selected_mig_devices_in_order() -> None:
    """GPU 1's second MIG device (GI 2) and GPU 3's first: each GI's and CI's access file, under
    the parent's minor, and nothing of the MIG devices not selected."""
    inventory = fake_inventory(gpus=4, mig={1: ["1g.10gb", "2g.20gb"], 3: ["3g.40gb"]})
    req = DeviceRequest(devices=("1:1", "3:0"), capabilities=CAPS)
    assert mig_cap_files(select(req, inventory)) == [
        "capabilities/gpu1/mig/gi2/access", "capabilities/gpu1/mig/gi2/ci0/access",
        "capabilities/gpu3/mig/gi1/access", "capabilities/gpu3/mig/gi1/ci0/access"]


def test_each_mig_cap_file_names_a_declared_cap_node() -> None:
    """The file <-> node relation: the minor discovery read from each file is a node that
    wanted_nodes declares (the fake host's minors follow the driver's mig-minors layout)."""
    inventory = fake_inventory(gpus=2, mig={1: ["1g.10gb", "1g.10gb"]})
    req = DeviceRequest(devices=("1:0", "1:1"), capabilities=CAPS)
    selection = select(req, inventory)
    declared = {n.path for n in wanted_nodes(selection, inventory, CAPS)}
    for rel in mig_cap_files(selection):
        parts = rel.split("/")  # capabilities/gpu<M>/mig/gi<G>[/ci<C>]/access
        gi = int(parts[3][2:])
        ci = int(parts[4][2:]) if len(parts) == 6 else None
        minor = cap_minor(int(parts[1][3:]), gi, ci)
        assert f"/dev/nvidia-caps/nvidia-cap{minor}" in declared


def test_a_whole_gpu_has_no_mig_cap_files() -> None:
    inventory = fake_inventory(gpus=2, mig={1: ["1g.10gb"]})
    req = DeviceRequest(devices=("0", "1"), capabilities=CAPS)
    assert mig_cap_files(select(req, inventory)) == []


def test_global_caps_add_their_files_after_the_devices() -> None:
    inventory = fake_inventory(gpus=1, mig={0: ["1g.10gb"]})
    req = DeviceRequest(devices=("0:0",), capabilities=CAPS)
    assert mig_cap_files(select(req, inventory), ("config", "monitor"))[2:] == [
        "capabilities/mig/config", "capabilities/mig/monitor"]


def test_imex_channel_node_is_the_hosts(tmp_path: Path) -> None:
    """NVIDIA_IMEX_CHANNELS=3: the host's /dev/nvidia-caps-imex-channels/channel3, as it is."""
    directory = tmp_path / IMEX_CHANNEL_DIR
    directory.mkdir()
    os.mknod(directory / "channel3", 0o600 | stat.S_IFCHR, os.makedev(234, 3))
    [node] = imex_channel_nodes(str(tmp_path), ["3"])
    assert (node.path, node.major, node.minor, node.file_mode) == (
        "/dev/nvidia-caps-imex-channels/channel3", 234, 3, 0o600)


def test_missing_imex_channel_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ShimError, match=r"no IMEX channel node /dev/nvidia-caps-imex-channels/"
                                        r"channel7 on this host"):
        imex_channel_nodes(str(tmp_path), ["7"])


@pytest.mark.parametrize(("capabilities", "uvm"), [
    ({"utility"}, False),
    ({"compute"}, True),
    ({"video"}, True),
    ({"graphics", "display"}, False),
])
def test_uvm_nodes_come_with_the_compute_libraries(capabilities: set[str], uvm: bool) -> None:
    """nvidia-uvm and nvidia-uvm-tools with compute or video (which brings the compute
    libraries, as libnvidia-container mounts them), not with utility or graphics alone."""
    inventory = fake_inventory(gpus=1)
    req = DeviceRequest(devices=("0",), capabilities=frozenset(capabilities))
    paths = {n.path for n in wanted_nodes(select(req, inventory), inventory,
                                          frozenset(capabilities), ())}
    nodes = {"/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}
    assert paths & nodes == (nodes if uvm else set())
