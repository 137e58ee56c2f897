"""Topology YAML: the built-ins, defaults filled in like a real host, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import topology
from simulator.errors import SimulatorError

A_GPU = """\
driver_version: "535.104.05"
cuda_version: "12.2"
gpus:
  - name: NVIDIA A100-SXM4-80GB
    brand: nvidia
    compute_capability: "8.0"
    memory_mib: 81920
    bus_id: "07:00.0"
    uuid: GPU-11111111-2222-3333-4444-555555555555
"""


def with_mig(devices: str) -> str:
    return A_GPU + f"    mig:\n      devices: {devices}\n"


class TestBuiltins:
    @pytest.mark.parametrize(("name", "gpus", "migs"), [
        ("t4", 1, [0]),
        ("dgx-a100", 8, [0] * 8),
        ("dgx-a100-mig", 8, [7, 2, 0, 0, 0, 0, 0, 0]),
    ])
    def test_builtin_shape(self, name: str, gpus: int, migs: list[int]) -> None:
        """Each built-in topology has its GPUs and MIG devices per GPU."""
        topo = topology.load(name)
        assert len(topo["gpus"]) == gpus
        assert [len(gpu["mig"]["devices"]) for gpu in topo["gpus"]] == migs

    def test_builtin_names(self) -> None:
        """The shipped topologies are exactly the three the contract names."""
        assert topology.builtin_names() == ["dgx-a100", "dgx-a100-mig", "t4"]

    def test_dgx_numa(self) -> None:
        """DGX A100: GPUs 0-3 on node 0 (CPUs 0-63) and 4-7 on node 1 (CPUs 64-127)."""
        topo = topology.load("dgx-a100")
        assert [gpu["numa_node"] for gpu in topo["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
        assert topo["numa_nodes"] == [{"id": 0, "cpus": "0-63"}, {"id": 1, "cpus": "64-127"}]

    def test_t4_facts(self) -> None:
        """The T4 is a Tesla-brand Turing board with 15360 MiB on one NUMA node."""
        gpu = topology.load("t4")["gpus"][0]
        assert (gpu["name"], gpu["brand"], gpu["compute_capability"], gpu["architecture"],
                gpu["memory_mib"], gpu["mig"]["capable"]) == \
            ("Tesla T4", "tesla", "7.5", "turing", 15360, False)

    def test_mig_profile_ids_differ_from_enum_index(self) -> None:
        """1g.10gb carries profile id 19 and enum index 0; 3g.40gb id 9 and index 2."""
        gpus = topology.load("dgx-a100-mig")["gpus"]
        first, second = gpus[0]["mig"]["devices"][0], gpus[1]["mig"]["devices"][0]
        assert (first["profile"], first["profile_id"], first["profile_index"]) == \
            ("1g.10gb", 19, 0)
        assert (second["profile"], second["profile_id"], second["profile_index"]) == \
            ("3g.40gb", 9, 2)

    def test_gpu_instance_ids_like_the_driver(self) -> None:
        """Seven 1g.10gb get GIs 7-13 at placements 0-6; two 3g.40gb get GI 1 at 4, GI 2 at 0."""
        gpus = topology.load("dgx-a100-mig")["gpus"]
        assert [(d["gi"], d["placement"]) for d in gpus[0]["mig"]["devices"]] == \
            [(gi, gi - 7) for gi in range(7, 14)]
        assert [(d["gi"], d["placement"]) for d in gpus[1]["mig"]["devices"]] == [(1, 4), (2, 0)]

    def test_caps_minors(self) -> None:
        """Caps minors follow the kernel's mig-minors numbering (3 + 135*gpu + 9*gi, +1+ci)."""
        device = topology.load("dgx-a100-mig")["gpus"][1]["mig"]["devices"][0]
        assert (device["gi_cap_minor"], device["ci_cap_minor"]) == (3 + 135 + 9, 3 + 135 + 10)


class TestDefaults:
    def test_short_bus_id_gets_the_8_digit_domain(self) -> None:
        """A bus id without a domain is normalized to NVML's "00000000:07:00.0"."""
        assert topology.parse(A_GPU, "x")["gpus"][0]["bus_id"] == "00000000:07:00.0"

    def test_minor_defaults_to_index_and_architecture_to_cc(self) -> None:
        """Omitted minor is the index; omitted architecture follows the compute capability."""
        gpu = topology.parse(A_GPU, "x")["gpus"][0]
        assert (gpu["minor"], gpu["architecture"]) == (0, "ampere")

    def test_mig_uuids_are_stable(self) -> None:
        """Generated MIG UUIDs are the same on every load of the same topology."""
        first = topology.parse(with_mig("[2g.20gb]"), "x")["gpus"][0]["mig"]["devices"][0]
        again = topology.parse(with_mig("[2g.20gb]"), "x")["gpus"][0]["mig"]["devices"][0]
        assert first["uuid"] == again["uuid"] and first["uuid"].startswith("MIG-")

    def test_profile_table_follows_memory(self) -> None:
        """A 40 GB board gets the A100-40GB profiles (1g.5gb)."""
        text = with_mig("[1g.5gb]").replace("81920", "40960")
        device = topology.parse(text, "x")["gpus"][0]["mig"]["devices"][0]
        assert (device["profile"], device["memory_mib"]) == ("1g.5gb", 4864)

    def test_user_file_loads_like_a_builtin(self, tmp_path: Path) -> None:
        """A path to a YAML file is read the same way, named after the file by default."""
        path = tmp_path / "mine.yaml"
        path.write_text(A_GPU)
        assert topology.load(str(path))["name"] == "mine"


class TestErrors:
    @pytest.mark.parametrize(("text", "message"), [
        ("[1, 2]", "<root>: expected a mapping"),
        ("gpus: [\n", "line "),
        (A_GPU + "colour: red\n", "colour: unknown key"),
        (A_GPU.replace("GPU-1111", "GPU-zzzz"), "gpus[0].uuid: expected GPU-"),
        (A_GPU.replace("brand: nvidia", "brand: acme"), "gpus[0].brand: expected one of"),
        (A_GPU.replace('"07:00.0"', "seven"), "gpus[0].bus_id: expected a PCI bus id"),
        (A_GPU.replace('"535.104.05"', "latest"), "driver_version: expected a version"),
        (A_GPU.replace("gpus:", "gpus: []\nx:"), "gpus: expected a non-empty list"),
        (with_mig("[9g.90gb]"), "mig.devices[0].profile: expected one of"),
        (with_mig("[4g.40gb, 4g.40gb]"), "no free placement left for 4g.40gb"),
        (with_mig("[{profile: 3g.40gb, placement: 1}]"), "3g.40gb starts at one of [4, 0]"),
        (with_mig("[{profile: 1g.10gb, gi: 3}, {profile: 1g.10gb, gi: 3}]"),
         "GPU instance 3 is used twice"),
        (A_GPU + "    numa_node: 5\n", "no NUMA node 5"),
        (A_GPU + "  - name: B\n    brand: nvidia\n    compute_capability: '8.0'\n"
                 "    memory_mib: 1\n    bus_id: '08:00.0'\n"
                 "    uuid: GPU-11111111-2222-3333-4444-555555555555\n",
         "uuid GPU-11111111-2222-3333-4444-555555555555 already used by gpus[0]"),
    ])
    def test_bad_topology(self, text: str, message: str) -> None:
        """A bad topology is one `simulate` error naming the file and the problem."""
        with pytest.raises(SimulatorError) as caught:
            topology.parse(text, "bad.yaml")
        assert caught.value.stage == "simulate"
        assert caught.value.cause.startswith("topology bad.yaml: ")
        assert message in caught.value.cause
        assert "\n" not in str(caught.value)

    def test_unknown_name(self) -> None:
        """Neither a built-in nor a file: the error lists the built-ins."""
        with pytest.raises(SimulatorError, match=r"no such built-in topology .*dgx-a100, "):
            topology.load("dgx-h100")
