"""NUMA placement: the pure cpuset arithmetic (``place``) and the modifier on a fake two-socket
host whose node cpulists live in a temporary sysfs root."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import pytest
from oci_schema import config_errors

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest
from gpu_core.testing import fake_inventory, mig_uuid
from runtime_shim.cdi_injection import Injection
from runtime_shim.context import Context, HostFacts
from runtime_shim.cpuset import Available
from runtime_shim.modifiers import numa

HOST = fake_inventory(8, {0: ("1g.10gb",)})
"""GPUs 0-3 on NUMA node 0 and 4-7 on node 1; GPU 0 carries one MIG device."""

NODE0 = frozenset(range(64))
NODE1 = frozenset(range(64, 128))
PREFIX = "numa: policy guaranteed"


def base_spec(annotation: Optional[str] = "guaranteed",
              cpu: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A config.json shaped like ``runc spec`` output, with an engine cpuset when given."""
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if cpu is not None:
        resources["cpu"] = cpu
    spec: dict[str, Any] = {
        "ociVersion": "1.2.1",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}], "resources": resources},
    }
    if annotation is not None:
        spec["annotations"] = {"ai.scheduling.policy": annotation}
    return spec


def cpu_of(spec: dict[str, Any]) -> Optional[dict[str, Any]]:
    value: Optional[dict[str, Any]] = spec["linux"]["resources"].get("cpu")
    return value


PLACE_CASES: list[tuple[str, Optional[dict[str, Any]], dict[int, int],
                        dict[int, Optional[frozenset[int]]], Optional[dict[str, Any]], str]] = [
    # (description, engine's cpu, GPU -> node, node -> cpus, expected cpu, note part)
    ("no engine cpuset: the node's cpus and memory node", None, {5: 1}, {1: NODE1},
     {"cpus": "64-127", "mems": "1"}, "GPU 5 on node 1: linux.resources.cpu.cpus 64-127, "
                                      "linux.resources.cpu.mems 1"),
    ("gpus on both nodes: the union", None, {1: 0, 5: 1}, {0: NODE0, 1: NODE1},
     {"cpus": "0-127", "mems": "0-1"}, "GPUs 1,5 on nodes 0-1"),
    ("engine cpuset wider: narrowed to the intersection", {"cpus": "32-95", "shares": 1024},
     {5: 1}, {1: NODE1}, {"cpus": "64-95", "mems": "1", "shares": 1024},
     "linux.resources.cpu.cpus 64-95 (within the engine's 32-95)"),
    ("engine mems kept when they already are the node", {"mems": "1"}, {5: 1}, {1: NODE1},
     {"cpus": "64-127", "mems": "1"}, "linux.resources.cpu.cpus 64-127"),
    ("engine cpus inside the node kept, mems narrowed", {"cpus": "70-71", "mems": "0-1"}, {5: 1},
     {1: NODE1}, {"cpus": "70-71", "mems": "1"}, "linux.resources.cpu.mems 1 (within"),
    ("engine cpus disjoint: left alone", {"cpus": "0-3"}, {5: 1}, {1: NODE1},
     {"cpus": "0-3"}, "placement skipped: GPU 5 on node 1 (cpus 64-127, mems 1) share nothing "
                      "with the engine's cpuset (cpus 0-3, mems unset); left as it was"),
    ("engine mems disjoint: left alone, cpus too", {"mems": "0"}, {5: 1}, {1: NODE1},
     {"mems": "0"}, "share nothing with the engine's cpuset (cpus unset, mems 0)"),
    ("empty engine strings mean unset", {"cpus": "", "mems": ""}, {5: 1}, {1: NODE1},
     {"cpus": "64-127", "mems": "1"}, "GPU 5 on node 1"),
    ("node sysfs does not describe: skipped", None, {5: 1}, {1: None}, None,
     "placement skipped: no cpulist for NUMA node 1 under the sysfs root"),
    ("node without cpus: skipped", None, {5: 1}, {1: frozenset()}, None,
     "(cpus none, mems 1) share nothing"),
    ("unreadable engine cpuset: skipped", {"cpus": "all"}, {5: 1}, {1: NODE1}, {"cpus": "all"},
     "placement skipped: the engine's cpuset is unreadable ('all' is not a number"),
]
PLACE_IDS = [c[0] for c in PLACE_CASES]


class TestPlace:
    @pytest.mark.parametrize(("description", "engine", "gpu_nodes", "node_cpus", "expected",
                              "note"), PLACE_CASES, ids=PLACE_IDS)
    def test_whole_spec(self, description: str, engine: Optional[dict[str, Any]],
                        gpu_nodes: dict[int, int], node_cpus: dict[int, Optional[frozenset[int]]],
                        expected: Optional[dict[str, Any]], note: str) -> None:
        """linux.resources.cpu becomes the expected object; the notes say what and why."""
        spec = base_spec(cpu=engine)
        result, notes = numa.place(spec, gpu_nodes, node_cpus, PREFIX)
        assert cpu_of(result) == expected
        assert result["linux"]["resources"]["devices"] == spec["linux"]["resources"]["devices"]
        assert len(notes) == 1 and notes[0].startswith(PREFIX + ": ") and note in notes[0]

    @pytest.mark.parametrize(("description", "engine", "gpu_nodes", "node_cpus", "expected",
                              "note"), PLACE_CASES, ids=PLACE_IDS)
    def test_is_idempotent_and_pure(self, description: str, engine: Optional[dict[str, Any]],
                                    gpu_nodes: dict[int, int],
                                    node_cpus: dict[int, Optional[frozenset[int]]],
                                    expected: Optional[dict[str, Any]], note: str) -> None:
        """The input is not mutated, and a second pass returns its input object."""
        spec = base_spec(cpu=engine)
        before = copy.deepcopy(spec)
        once, _ = numa.place(spec, gpu_nodes, node_cpus, PREFIX)
        assert spec == before
        assert numa.place(once, gpu_nodes, node_cpus, PREFIX)[0] is once

    @pytest.mark.parametrize(("description", "engine", "gpu_nodes", "node_cpus", "expected",
                              "note"), PLACE_CASES, ids=PLACE_IDS)
    def test_never_widens(self, description: str, engine: Optional[dict[str, Any]],
                          gpu_nodes: dict[int, int],
                          node_cpus: dict[int, Optional[frozenset[int]]],
                          expected: Optional[dict[str, Any]], note: str) -> None:
        """Every CPU and memory node of the result was already allowed by the engine."""
        from gpu_core.numa import parse_ids

        result, _ = numa.place(base_spec(cpu=engine), gpu_nodes, node_cpus, PREFIX)
        placed = cpu_of(result) or {}
        for key in ("cpus", "mems"):
            have = (engine or {}).get(key)
            if have and have != "all":
                assert parse_ids(placed[key]) <= parse_ids(have)

    def test_unchanged_placement_has_no_notes(self) -> None:
        """A spec already on the node comes back as the same object with nothing to say."""
        spec = base_spec(cpu={"cpus": "64-127", "mems": "1"})
        assert numa.place(spec, {5: 1}, {1: NODE1}, PREFIX) == (spec, [])


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A two-socket host's sysfs: node 0 has CPUs 0-63, node 1 has 64-127."""
    for node, cpus in ((0, "0-63"), (1, "64-127")):
        directory = tmp_path / "devices" / "system" / "node" / f"node{node}"
        directory.mkdir(parents=True)
        (directory / "cpulist").write_text(cpus + "\n")
    return tmp_path


def context(sysfs: Path, tokens: Optional[tuple[str, ...]], config_text: str = "",
            host: Any = HOST) -> Context:
    request = None if tokens is None else DeviceRequest(
        devices=tokens, capabilities=frozenset({"compute", "utility"}))
    config = config_mod.parse(config_text + f"\nhost: {{sysfs_root: {sysfs}}}\n", "test.yaml")
    return Context(config=config, request=request, discover=lambda: host)


APPLY_CASES: list[tuple[str, Optional[str], Optional[tuple[str, ...]], str,
                        Optional[dict[str, Any]]]] = [
    # (description, annotation, GPU tokens, config text, expected cpu)
    ("gpu 5 under guaranteed: node 1", "guaranteed", ("5",), "", {"cpus": "64-127", "mems": "1"}),
    ("gpu 2 under burstable: node 0", "burstable", ("2",), "", {"cpus": "0-63", "mems": "0"}),
    ("all gpus: both nodes", "guaranteed", ("all",), "", {"cpus": "0-127", "mems": "0-1"}),
    ("mig device: its parent's node", "guaranteed", (mig_uuid(0, 1, 0),), "",
     {"cpus": "0-63", "mems": "0"}),
    ("no policy: untouched", None, ("5",), "", None),
    ("default policy for gpu containers", None, ("5",), "policy: {default: guaranteed}\n",
     {"cpus": "64-127", "mems": "1"}),
    ("policy with numa off: untouched", "flat", ("5",), "policies: {flat: {numa: false}}\n",
     None),
    ("not a gpu container: untouched", "guaranteed", None, "", None),
    ("no gpu selected (none): untouched", "guaranteed", (), "", None),
]


class TestApply:
    @pytest.mark.parametrize(("description", "annotation", "tokens", "config", "expected"),
                             APPLY_CASES, ids=[c[0] for c in APPLY_CASES])
    def test_whole_spec(self, sysfs: Path, description: str, annotation: Optional[str],
                        tokens: Optional[tuple[str, ...]], config: str,
                        expected: Optional[dict[str, Any]]) -> None:
        """The selected GPUs' nodes decide linux.resources.cpu; the result validates."""
        spec = base_spec(annotation)
        result, _ = numa.apply(spec, context(sysfs, tokens, config))
        assert cpu_of(result) == expected
        if expected is None:
            assert result is spec
        assert config_errors(result) == []

    def test_unknown_gpu_node_skips_with_a_note(self, sysfs: Path) -> None:
        """On a host whose GPUs report no NUMA node (-1) nothing changes and the note says so."""
        host = fake_inventory(8, numa=False)
        spec = base_spec()
        result, notes = numa.apply(spec, context(sysfs, ("3", "5"), host=host))
        assert result is spec
        assert notes == [f"{PREFIX}: placement skipped: NUMA node of GPUs 3,5 unknown"]

    def test_one_unknown_node_skips_all(self, sysfs: Path) -> None:
        """Placing on the known node alone would starve the other GPU: skip instead."""
        gpus = list(HOST.gpus)
        gpus[5] = gpus[5]._replace(numa_node=None)
        host = HOST._replace(gpus=tuple(gpus))
        result, notes = numa.apply(base_spec(), context(sysfs, ("1", "5"), host=host))
        assert cpu_of(result) is None and "NUMA node of GPU 5 unknown" in notes[0]

    def test_missing_sysfs_node_skips_with_a_note(self, tmp_path: Path) -> None:
        """A sysfs root without node cpulists (a container host without /sys) changes nothing."""
        spec = base_spec()
        result, notes = numa.apply(spec, context(tmp_path, ("5",)))
        assert result is spec
        assert notes == [f"{PREFIX}: placement skipped: no cpulist for NUMA node 1 under the "
                         "sysfs root"]


# --- what the container can get on this host (runtime_shim.cpuset.Available) -------------------

AVAILABLE_CASES: list[tuple[str, Available, Optional[dict[str, Any]], str]] = [
    # (description, what the host gives, expected cpu for GPU 5 on node 1, note part)
    ("a 2-cpu host without node 1: skipped", Available(frozenset({0, 1}), frozenset({0}),
                                                       "host online cpus 0-1 mems 0"),
     None, "placement skipped: GPU 5 on node 1 (cpus 64-127, mems 1) outside what the "
           "container can get here (host online cpus 0-1 mems 0), left as it was"),
    ("node 1 memory offline: skipped", Available(None, frozenset({0}), "host mems 0"),
     None, "placement skipped"),
    ("some of node 1's cpus isolated: narrowed", Available(frozenset(range(0, 100)), None,
                                                           "cgroup v2 /kubepods.slice"),
     {"cpus": "64-99", "mems": "1"}, "linux.resources.cpu.cpus 64-99, linux.resources.cpu.mems "
                                     "1 (narrowed from cpus 64-127, mems 1 to what the container "
                                     "can get here: cgroup v2 /kubepods.slice)"),
    ("all of node 1 available: placed as asked", Available(frozenset(range(128)),
                                                           frozenset({0, 1}), "x"),
     {"cpus": "64-127", "mems": "1"},
     "linux.resources.cpu.cpus 64-127, linux.resources.cpu.mems 1"),
    ("nothing known: placed as asked", Available(), {"cpus": "64-127", "mems": "1"},
     "linux.resources.cpu.mems 1"),
]


@pytest.mark.parametrize(("description", "available", "expected", "note"), AVAILABLE_CASES,
                         ids=[c[0] for c in AVAILABLE_CASES])
def test_placement_stays_inside_what_the_container_can_get(
        description: str, available: Available, expected: Optional[dict[str, Any]],
        note: str) -> None:
    """Placement is the node's cpus and mems cut to the host's online ones and the parent
    cgroup's cpuset; nothing left: the spec is untouched and the note says why."""
    spec = base_spec()
    result, notes = numa.place(spec, {5: 1}, {1: NODE1}, PREFIX, available)
    assert cpu_of(result) == expected
    assert note in notes[0]
    assert ("narrowed" in notes[0]) is ("narrowed" in note)
    if expected is None:
        assert result is spec
    assert config_errors(result) == []


def test_engine_cpuset_and_host_limit_both_apply() -> None:
    """An engine cpuset is intersected after the host's limit: 64-70 of node 1 within 0-67."""
    spec = base_spec(cpu={"cpus": "60-70"})
    result, _ = numa.place(spec, {5: 1}, {1: NODE1}, PREFIX,
                           Available(frozenset(range(68)), None, "x"))
    assert cpu_of(result) == {"cpus": "64-67", "mems": "1"}


def test_modifier_asks_with_the_specs_cgroups_path(sysfs: Path) -> None:
    """The modifier passes linux.cgroupsPath (as the cgroup modifier left it) to the host's
    reader and applies its answer."""
    asked: list[Optional[str]] = []

    def available(cgroups_path: Optional[str]) -> Available:
        asked.append(cgroups_path)
        return Available(frozenset({0, 1}), frozenset({0}), "host online cpus 0-1 mems 0")

    spec = base_spec()
    spec["linux"]["cgroupsPath"] = "/ai-workload.slice/c1"
    ctx = context(sysfs, ("5",))
    ctx.host = HostFacts(available=available)
    result, notes = numa.apply(spec, ctx)
    assert asked == ["/ai-workload.slice/c1"]
    assert result is spec and "placement skipped" in notes[0]


class TestCdiInjected:
    """NUMA placement from the GPU nodes the engine injected, whatever the request says."""

    def injected_context(self, sysfs: Path, minors: tuple[int, ...],
                         tokens: Optional[tuple[str, ...]] = None, host: Any = HOST) -> Context:
        ctx = context(sysfs, tokens, host=host)
        ctx.injected = Injection(minors, tuple(f"/dev/nvidia{m}" for m in minors)
                                 or ("annotation cdi.k8s.io/x",))
        return ctx

    def test_placed_on_the_present_gpus_node_even_when_void(self, sysfs: Path) -> None:
        result, notes = numa.apply(base_spec(), self.injected_context(sysfs, (5,)))
        assert cpu_of(result) == {"cpus": "64-127", "mems": "1"}
        assert notes == [f"{PREFIX}: GPU 5 on node 1: linux.resources.cpu.cpus 64-127, "
                         "linux.resources.cpu.mems 1"]

    def test_present_gpus_win_over_the_env_request(self, sysfs: Path) -> None:
        """NVIDIA_VISIBLE_DEVICES=all would give both nodes; /dev/nvidia1 alone is node 0."""
        result, _ = numa.apply(base_spec(), self.injected_context(sysfs, (1,), ("all",)))
        assert cpu_of(result) == {"cpus": "0-63", "mems": "0"}

    def test_minor_maps_to_the_gpu_with_that_minor_not_that_index(self, sysfs: Path) -> None:
        """GPU index 0 has minor 6 here (on node 1): /dev/nvidia6 is GPU 0, placed on node 1."""
        gpus = [g._replace(minor={0: 6, 6: 0}.get(g.index, g.minor))
                for g in HOST.gpus]
        host = HOST._replace(gpus=tuple(gpus))
        host = host._replace(gpus=tuple(
            g._replace(numa_node=1) if g.index == 0 else
            g._replace(numa_node=0) if g.index == 6 else g for g in host.gpus))
        result, notes = numa.apply(base_spec(),
                                   self.injected_context(sysfs, (6,), host=host))
        assert cpu_of(result) == {"cpus": "64-127", "mems": "1"}
        assert "GPU 0 on node 1" in notes[0]

    def test_minor_of_no_host_gpu_skips_with_a_note(self, sysfs: Path) -> None:
        spec = base_spec()
        result, notes = numa.apply(spec, self.injected_context(sysfs, (3, 40)))
        assert result is spec
        assert notes == [f"{PREFIX}: placement skipped: no GPU of this host has the minor "
                         "number of /dev/nvidia40"]

    def test_annotation_only_places_nothing(self, sysfs: Path) -> None:
        """No GPU node, no placement: an annotation cannot earn a container CPUs."""
        spec = base_spec()
        assert numa.apply(spec, self.injected_context(sysfs, ()))[0] is spec


def test_present_gpus_keeps_minor_order_and_reports_absent_minors() -> None:
    found, absent = numa.present_gpus((5, 9, 2), HOST.gpus)
    assert [g.index for g in found] == [5, 2] and absent == (9,)


def test_failed_discovery_beside_a_cdi_injection_only_skips_placement(sysfs: Path) -> None:
    """The engine already gave the GPUs: a host whose NVML fails loses placement, not the start."""
    def broken() -> Any:
        raise ShimError("discovery", "nvml: NVML Shared Library Not Found")

    ctx = context(sysfs, None)
    ctx.discover = broken
    ctx.injected = Injection((0,), ("/dev/nvidia0 (195:0)",))
    spec = base_spec()
    result, notes = numa.apply(spec, ctx)
    assert result is spec
    assert notes == [f"{PREFIX}: placement skipped: discovery: nvml: NVML Shared Library Not "
                     "Found"]
