"""The devices modifier: whole-spec tables, idempotence, purity, OCI schema validity."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Callable, Optional

import oci_schema
import pytest

from gpu_core.config import defaults
from gpu_core.errors import ShimError
from gpu_core.inventory import DeviceNode, Inventory
from gpu_core.request import DeviceRequest
from gpu_core.testing import CAPS_MAJOR, UVM_MAJOR, cap_minor, fake_inventory, gpu_uuid, mig_uuid
from runtime_shim.cdi_injection import Injection
from runtime_shim.context import Context
from runtime_shim.modifiers import devices

HOST = fake_inventory(8, {0: ("1g.10gb", "3g.40gb")})
DEFAULT_CAPS = frozenset({"compute", "utility"})


def base_spec() -> dict[str, Any]:
    """A config.json as `runc spec` writes it, with a device the image already declares."""
    return {
        "ociVersion": "1.2.1",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        },
    }


def context(devices_: Optional[tuple[str, ...]], caps: Iterable[str] = DEFAULT_CAPS,
            host: Inventory = HOST) -> Context:
    request = None if devices_ is None else DeviceRequest(devices=devices_,
                                                          capabilities=frozenset(caps))
    return Context(config=defaults(), request=request, discover=lambda: host)


def declared(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(d["path"], d["major"], d["minor"]) for d in spec["linux"]["devices"]]


def allowed(spec: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(r["major"], r["minor"], r["access"]) for r in spec["linux"]["resources"]["devices"]
            if r.get("allow")]


CTL = ("/dev/nvidiactl", 195, 255)
UVM = ("/dev/nvidia-uvm", UVM_MAJOR, 0)
UVM_TOOLS = ("/dev/nvidia-uvm-tools", UVM_MAJOR, 1)
MODESET = ("/dev/nvidia-modeset", 195, 254)
FUSE = ("/dev/fuse", 10, 229)


def gpu(n: int) -> tuple[str, int, int]:
    return (f"/dev/nvidia{n}", 195, n)


def cap(minor: int) -> tuple[str, int, int]:
    return (f"/dev/nvidia-caps/nvidia-cap{minor}", CAPS_MAJOR, minor)


CASES: list[tuple[str, tuple[str, ...], frozenset[str], list[tuple[str, int, int]]]] = [
    # (description, NVIDIA_VISIBLE_DEVICES tokens, capabilities, nodes added in order)
    ("gpu by uuid with compute", (gpu_uuid(3),), DEFAULT_CAPS, [gpu(3), CTL, UVM, UVM_TOOLS]),
    ("utility only leaves out uvm", ("3",), frozenset({"utility"}), [gpu(3), CTL]),
    ("display adds modeset", ("3",), frozenset({"utility", "display"}), [gpu(3), CTL, MODESET]),
    ("none gets the control nodes only", (), DEFAULT_CAPS, [CTL, UVM, UVM_TOOLS]),
    ("two gpus in request order", ("5", "1"), frozenset({"utility"}), [gpu(5), gpu(1), CTL]),
    ("all gpus and every mig device with its caps", ("all",), frozenset({"utility"}),
     [*(gpu(i) for i in range(8)), cap(cap_minor(0, 1)), cap(cap_minor(0, 1, 0)),
      cap(cap_minor(0, 2)), cap(cap_minor(0, 2, 0)), CTL]),
    ("mig device brings parent and both caps", (mig_uuid(0, 2, 0),), frozenset({"utility"}),
     [gpu(0), cap(cap_minor(0, 2)), cap(cap_minor(0, 2, 0)), CTL]),
    ("two mig devices share the parent node", ("0:0", "0:1"), frozenset({"utility"}),
     [gpu(0), cap(cap_minor(0, 1)), cap(cap_minor(0, 1, 0)), cap(cap_minor(0, 2)),
      cap(cap_minor(0, 2, 0)), CTL]),
]


def run_case(tokens: tuple[str, ...], caps: frozenset[str]) -> tuple[dict[str, Any], list[str]]:
    return devices.apply(base_spec(), context(tokens, caps))


@pytest.mark.parametrize(("description", "tokens", "caps", "nodes"), CASES,
                         ids=[c[0] for c in CASES])
def test_whole_spec(description: str, tokens: tuple[str, ...], caps: frozenset[str],
                    nodes: list[tuple[str, int, int]]) -> None:
    """Existing entries stay first; each wanted node gets an entry and an rw allow rule after."""
    result, _ = run_case(tokens, caps)
    assert declared(result) == [FUSE, *nodes]
    assert allowed(result) == [(major, minor, "rw") for _, major, minor in nodes]
    assert result["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert result["linux"]["namespaces"] == base_spec()["linux"]["namespaces"]


def oci_validator() -> Any:
    return oci_schema.config_validator()


def test_oci_validator_rejects_a_bad_device_entry() -> None:
    """The schema check used below does reach linux.devices (a fileMode string fails)."""
    spec = base_spec()
    spec["linux"]["devices"][0]["fileMode"] = "0666"
    assert not oci_validator().is_valid(spec)


@pytest.mark.parametrize(("description", "tokens", "caps", "nodes"), CASES,
                         ids=[c[0] for c in CASES])
def test_result_validates_against_oci_schema(description: str, tokens: tuple[str, ...],
                                             caps: frozenset[str],
                                             nodes: list[tuple[str, int, int]]) -> None:
    """Every spec the modifier writes is a valid OCI runtime-spec 1.2.1 config."""
    result, _ = run_case(tokens, caps)
    errors = [e.message for e in oci_validator().iter_errors(result)]
    assert errors == []


def test_entry_copies_mode_and_owner_from_host_node() -> None:
    """fileMode, uid and gid come from the host node, type is c."""
    node = DeviceNode(path="/dev/nvidia3", host_path="/x/dev/nvidia3", major=195, minor=3,
                      file_mode=0o660, uid=0, gid=44)
    host = HOST._replace(gpu_nodes={**HOST.gpu_nodes, 3: node})
    result, _ = devices.apply(base_spec(), context(("3",), {"utility"}, host))
    assert result["linux"]["devices"][1] == {"path": "/dev/nvidia3", "type": "c", "major": 195,
                                             "minor": 3, "fileMode": 0o660, "uid": 0, "gid": 44}


def test_note_lists_each_added_node() -> None:
    """One note line names every node added, with its major:minor."""
    _, notes = run_case((gpu_uuid(3),), DEFAULT_CAPS)
    assert notes == ["devices: added /dev/nvidia3 (195:3), /dev/nvidiactl (195:255), "
                     f"/dev/nvidia-uvm ({UVM_MAJOR}:0), /dev/nvidia-uvm-tools ({UVM_MAJOR}:1)"]


def test_non_gpu_container_is_untouched_and_not_discovered() -> None:
    """Without a request the same spec object comes back and discovery never runs."""
    def refuse() -> Inventory:
        raise AssertionError("discovery ran")

    spec = base_spec()
    ctx = Context(config=defaults(), request=None, discover=refuse)
    assert devices.apply(spec, ctx) == (spec, [])
    assert devices.apply(spec, ctx)[0] is spec


def test_applying_twice_equals_once() -> None:
    """The second application returns its input object and no notes."""
    ctx = context(("0:1", "3"))
    once, _ = devices.apply(base_spec(), ctx)
    twice, notes = devices.apply(once, ctx)
    assert twice is once
    assert notes == []


def test_input_spec_is_not_mutated() -> None:
    """The caller's spec, nested lists included, is unchanged after apply."""
    spec = base_spec()
    before = copy.deepcopy(spec)
    result, _ = devices.apply(spec, context(("3", "0:0")))
    assert spec == before
    assert result["linux"]["devices"] is not spec["linux"]["devices"]


def test_existing_entry_for_a_node_is_kept_and_only_the_rule_added() -> None:
    """An image that already declares /dev/nvidia3 keeps its entry; the allow rule is added."""
    spec = base_spec()
    mine = {"path": "/dev/nvidia3", "type": "c", "major": 195, "minor": 3, "fileMode": 0o600}
    spec["linux"]["devices"].append(mine)
    result, notes = devices.apply(spec, context(("3",), {"utility"}))
    assert result["linux"]["devices"][:3] == [spec["linux"]["devices"][0], mine,
                                              {"path": "/dev/nvidiactl", "type": "c",
                                               "major": 195, "minor": 255, "fileMode": 0o666,
                                               "uid": 0, "gid": 0}]
    assert allowed(result) == [(195, 3, "rw"), (195, 255, "rw")]
    assert notes == ["devices: added /dev/nvidia3 (195:3), /dev/nvidiactl (195:255)"]


def test_existing_wider_rule_is_not_duplicated() -> None:
    """An allow rule for the node with rwm already covers rw; no second rule is added."""
    spec = base_spec()
    spec["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 195, "minor": 3, "access": "rwm"})
    result, _ = devices.apply(spec, context(("3",), {"utility"}))
    assert allowed(result) == [(195, 3, "rwm"), (195, 255, "rw")]


def test_deny_rule_for_the_node_does_not_count_as_present() -> None:
    """A deny rule for the node is followed by our allow rule, which wins as the later rule."""
    spec = base_spec()
    spec["linux"]["resources"]["devices"].append(
        {"allow": False, "type": "c", "major": 195, "minor": 3, "access": "rw"})
    result, _ = devices.apply(spec, context(("3",), {"utility"}))
    assert result["linux"]["resources"]["devices"][-2] == {
        "allow": True, "type": "c", "major": 195, "minor": 3, "access": "rw"}


def test_spec_without_linux_gets_one() -> None:
    """A spec with no linux object gains linux.devices and linux.resources.devices."""
    result, _ = devices.apply({"ociVersion": "1.2.1"}, context(("3",), {"utility"}))
    assert declared(result) == [gpu(3), CTL]
    assert allowed(result) == [(195, 3, "rw"), (195, 255, "rw")]


def test_unknown_device_is_request_error() -> None:
    """An unknown token fails the modifier with the selection's request error."""
    with pytest.raises(ShimError) as caught:
        devices.apply(base_spec(), context(("9",)))
    assert caught.value.stage == "request"
    assert "unknown device 9; this host has GPUs 0-7" in caught.value.cause


def test_missing_gpu_node_is_devices_error() -> None:
    """A selected GPU whose /dev node is missing on the host fails with the path named."""
    host = fake_inventory(4, missing_gpu_nodes=(2,))
    with pytest.raises(ShimError) as caught:
        devices.apply(base_spec(), context(("2",), host=host))
    assert str(caught.value) == "devices: no device node /dev/nvidia2 on this host for GPU 2"


def test_missing_mig_cap_node_is_devices_error() -> None:
    """A MIG device whose access capability node is unknown fails, naming the device."""
    host = HOST._replace(cap_nodes={})
    with pytest.raises(ShimError) as caught:
        devices.apply(base_spec(), context(("0:0",), host=host))
    assert caught.value.stage == "devices"
    assert "GPU instance access capability node for MIG device 0:0" in caught.value.cause


def test_missing_control_node_is_skipped() -> None:
    """A host without nvidia-uvm nodes gets the GPU and nvidiactl only."""
    host = fake_inventory(4, controls=("nvidiactl",))
    result, _ = devices.apply(base_spec(), context(("1",), host=host))
    assert declared(result) == [FUSE, gpu(1), CTL]


BAD_SPECS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("linux not an object", lambda s: s.__setitem__("linux", []), "linux is list"),
    ("devices not an array", lambda s: s["linux"].__setitem__("devices", {}),
     "linux.devices is dict"),
    ("resources.devices not an array",
     lambda s: s["linux"]["resources"].__setitem__("devices", "a"),
     "linux.resources.devices is str"),
]


@pytest.mark.parametrize(("description", "spoil", "message"), BAD_SPECS,
                         ids=[c[0] for c in BAD_SPECS])
def test_malformed_spec_is_devices_error(description: str,
                                         spoil: Callable[[dict[str, Any]], None],
                                         message: str) -> None:
    """A spec whose device fields have the wrong type is reported, not rewritten."""
    spec = base_spec()
    spoil(spec)
    with pytest.raises(ShimError) as caught:
        devices.apply(spec, context(("3",)))
    assert caught.value.stage == "devices"
    assert message in caught.value.cause


def injected(*minors: int) -> Injection:
    return Injection(gpu_minors=minors, evidence=tuple(f"/dev/nvidia{m}" for m in minors)
                     or ("annotation cdi.k8s.io/x",))


@pytest.mark.parametrize("tokens", [("all",), ("0", "1"), None])
def test_cdi_injected_spec_is_not_widened_whatever_the_request(
        tokens: Optional[tuple[str, ...]]) -> None:
    """NVIDIA_VISIBLE_DEVICES=all, a list, or void/unset: the engine's devices stay the only
    ones, and no host is even discovered."""
    def refuse() -> Inventory:
        raise AssertionError("discovered")

    spec = base_spec()
    spec["linux"]["devices"] = [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]
    ctx = context(tokens) if tokens is not None else Context(config=defaults(), request=None)
    ctx.discover = refuse
    ctx.injected = injected(0)
    result, notes = devices.apply(spec, ctx)
    assert result is spec
    assert notes == ["devices: CDI-injected by the engine (/dev/nvidia0): not widened"]


def test_cdi_annotation_alone_also_stops_device_injection() -> None:
    """An annotation may make the shim do less: it adds no device even for `all`."""
    spec = base_spec()
    ctx = context(("all",))
    ctx.injected = injected()
    result, notes = devices.apply(spec, ctx)
    assert result is spec
    assert notes == ["devices: CDI-injected by the engine (annotation cdi.k8s.io/x): not widened"]
