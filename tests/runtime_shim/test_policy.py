"""Workload policies: the policy modifier's swap and block-IO edits and notes, and each shipped
policy through the whole pipeline (with the oom clamps, cgroup parent and NUMA placement)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import pytest
from oci_schema import config_errors

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest
from gpu_core.testing import fake_inventory
from runtime_shim import pipeline
from runtime_shim.context import Context, HostFacts
from runtime_shim.modifiers import policy

GIB = 1024 ** 3
HOST = fake_inventory(8)
"""A DGX-like host: GPUs 0-3 on NUMA node 0, 4-7 on node 1."""


def base_spec(annotation: Optional[str] = None, env: tuple[str, ...] = (),
              memory: Optional[dict[str, Any]] = None,
              block_io: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A config.json shaped like ``runc spec`` output, with the resources given."""
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if memory is not None:
        resources["memory"] = memory
    if block_io is not None:
        resources["blockIO"] = block_io
    spec: dict[str, Any] = {
        "ociVersion": "1.2.1",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin", *env]},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}], "resources": resources},
    }
    if annotation is not None:
        spec["annotations"] = {"ai.scheduling.policy": annotation}
    return spec


def context(config_text: str = "", gpus: Optional[tuple[str, ...]] = None,
            own_oom: int = 0, cap_sys_resource: bool = True,
            sysfs: Optional[Path] = None, io_weight: bool = True) -> Context:
    """A context for GPU tokens ``gpus`` (None: not a GPU container) on the fake DGX host."""
    if sysfs is not None:
        config_text += f"\nhost: {{sysfs_root: {sysfs}}}\n"
    request = None if gpus is None else DeviceRequest(
        devices=gpus, capabilities=frozenset({"compute", "utility"}))
    return Context(config=config_mod.parse(config_text, "test.yaml"), request=request,
                   container_id="ctr", discover=lambda: HOST,
                   host=HostFacts(oom_score_adj=own_oom, cap_sys_resource=cap_sys_resource,
                                  io_weight=io_weight))


def resources(spec: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = spec["linux"]["resources"]
    return value


LIMIT = {"limit": 8 * GIB}
DEVICES_RULE = {"devices": [{"allow": False, "access": "rwm"}]}
CUSTOM = "policies: {io-only: {blkio_weight: 10}, none-at-all: {}}\n"

CASES: list[tuple[str, dict[str, Any], str, Optional[tuple[str, ...]], dict[str, Any]]] = [
    # (description, spec, config text, GPU tokens, expected linux.resources)
    ("guaranteed with a memory limit: swap equals the limit, weight 800",
     base_spec("guaranteed", memory=LIMIT), "", ("5",),
     {**DEVICES_RULE, "memory": {"limit": 8 * GIB, "swap": 8 * GIB},
      "blockIO": {"weight": 800}}),
    ("guaranteed without a memory limit: weight only",
     base_spec("guaranteed"), "", ("5",), {**DEVICES_RULE, "blockIO": {"weight": 800}}),
    ("an engine's swap allowance is replaced by the limit",
     base_spec("guaranteed", memory={"limit": GIB, "swap": 2 * GIB, "reservation": GIB // 2}),
     "", None,
     {**DEVICES_RULE, "memory": {"limit": GIB, "swap": GIB, "reservation": GIB // 2},
      "blockIO": {"weight": 800}}),
    ("unlimited memory (-1) is no limit: swap untouched",
     base_spec("guaranteed", memory={"limit": -1, "swap": -1}), "", None,
     {**DEVICES_RULE, "memory": {"limit": -1, "swap": -1}, "blockIO": {"weight": 800}}),
    ("per-device weights survive beside the weight",
     base_spec("guaranteed", block_io={"weightDevice": [{"major": 8, "minor": 0,
                                                         "weight": 300}]}), "", None,
     {**DEVICES_RULE, "blockIO": {"weight": 800, "weightDevice": [{"major": 8, "minor": 0,
                                                                   "weight": 300}]}}),
    ("burstable makes no swap or io edits",
     base_spec("burstable", memory=LIMIT), "", ("5",), {**DEVICES_RULE, "memory": LIMIT}),
    ("chosen by env when the engine passes no annotations",
     base_spec(env=("AI_SCHEDULING_POLICY=guaranteed",), memory=LIMIT), "", ("5",),
     {**DEVICES_RULE, "memory": {"limit": 8 * GIB, "swap": 8 * GIB},
      "blockIO": {"weight": 800}}),
    ("annotation beats env",
     base_spec("burstable", env=("AI_SCHEDULING_POLICY=guaranteed",), memory=LIMIT), "", ("5",),
     {**DEVICES_RULE, "memory": LIMIT}),
    ("no annotation and no default: no policy", base_spec(memory=LIMIT), "", ("5",),
     {**DEVICES_RULE, "memory": LIMIT}),
    ("configured default applies to a GPU container",
     base_spec(memory=LIMIT), "policy: {default: guaranteed}\n", ("5",),
     {**DEVICES_RULE, "memory": {"limit": 8 * GIB, "swap": 8 * GIB},
      "blockIO": {"weight": 800}}),
    ("configured default does not apply to a non-GPU container",
     base_spec(memory=LIMIT), "policy: {default: guaranteed}\n", None,
     {**DEVICES_RULE, "memory": LIMIT}),
    ("unknown name ignored when config says so",
     base_spec("platinum", memory=LIMIT), "policy: {unknown: ignore}\n", ("5",),
     {**DEVICES_RULE, "memory": LIMIT}),
    ("a configured custom policy with the minimum weight",
     base_spec("io-only", memory=LIMIT), CUSTOM, ("5",),
     {**DEVICES_RULE, "memory": LIMIT, "blockIO": {"weight": 10}}),
    ("a policy with no edits changes nothing",
     base_spec("none-at-all", memory=LIMIT), CUSTOM, ("5",), {**DEVICES_RULE, "memory": LIMIT}),
]
IDS = [c[0] for c in CASES]


class TestPolicyModifier:
    @pytest.mark.parametrize(("description", "spec", "config", "gpus", "expected"), CASES,
                             ids=IDS)
    def test_whole_spec(self, description: str, spec: dict[str, Any], config: str,
                        gpus: Optional[tuple[str, ...]], expected: dict[str, Any]) -> None:
        """linux.resources becomes exactly the expected object; everything else stays."""
        result, _ = policy.apply(spec, context(config, gpus))
        assert resources(result) == expected
        assert {k: v for k, v in result.items() if k != "linux"} == \
            {k: v for k, v in spec.items() if k != "linux"}
        assert result["linux"]["namespaces"] == spec["linux"]["namespaces"]

    @pytest.mark.parametrize(("description", "spec", "config", "gpus", "expected"), CASES,
                             ids=IDS)
    def test_is_idempotent_and_pure(self, description: str, spec: dict[str, Any], config: str,
                                    gpus: Optional[tuple[str, ...]],
                                    expected: dict[str, Any]) -> None:
        """The input is not mutated, and a second pass returns its input object."""
        before = copy.deepcopy(spec)
        ctx = context(config, gpus)
        once, _ = policy.apply(spec, ctx)
        assert spec == before
        assert policy.apply(once, ctx)[0] is once

    @pytest.mark.parametrize(("description", "spec", "config", "gpus", "expected"), CASES,
                             ids=IDS)
    def test_result_validates_against_oci_schema(
            self, description: str, spec: dict[str, Any], config: str,
            gpus: Optional[tuple[str, ...]], expected: dict[str, Any]) -> None:
        """Every spec the modifier writes is a valid OCI runtime-spec 1.2.1 config."""
        assert config_errors(policy.apply(spec, context(config, gpus))[0]) == []

    def test_no_policy_returns_the_same_object(self) -> None:
        """Without a policy the spec object itself comes back, with no notes."""
        spec = base_spec(memory=LIMIT)
        assert policy.apply(spec, context(gpus=("0",))) == (spec, [])

    def test_notes_name_policy_source_and_every_edit(self) -> None:
        """The notes say which policy applied, from where, what it asks and each edit made."""
        _, notes = policy.apply(base_spec("guaranteed", memory=LIMIT), context(gpus=("5",)))
        assert notes == [
            "policy: guaranteed (from annotation): oom_score_adj -800, swap off, "
            "numa placement, blkio weight 800",
            f"policy: linux.resources.memory.swap {8 * GIB} (equal to the memory limit: no "
            "swap; was unset)",
            "policy: linux.resources.blockIO.weight 800 (was unset)",
        ]

    def test_missing_limit_is_noted(self) -> None:
        """Swap off without a memory limit says it was skipped and why."""
        _, notes = policy.apply(base_spec("guaranteed"), context(gpus=("5",)))
        assert "policy: swap off skipped: no linux.resources.memory.limit set" in notes

    def test_weight_skipped_where_the_runtime_cannot_set_it(self) -> None:
        """Where the runtime would fail on a weight, the rest of the policy still applies and
        the notes say the weight was skipped."""
        result, notes = policy.apply(base_spec("guaranteed", memory=LIMIT),
                                     context(gpus=("5",), io_weight=False))
        assert resources(result) == {**DEVICES_RULE,
                                     "memory": {"limit": 8 * GIB, "swap": 8 * GIB}}
        assert notes[-1] == ("policy: blkio weight 800 skipped: the low-level runtime cannot set "
                             "a block-IO weight on this host (no weight file it writes in the "
                             "blkio/io cgroup)")

    def test_engine_weight_equal_to_the_policy_is_kept_silently(self) -> None:
        """A weight the engine already set to the policy's value needs no edit and no note."""
        spec = base_spec("guaranteed", block_io={"weight": 800})
        result, notes = policy.apply(spec, context(gpus=("5",), io_weight=False))
        assert result is spec and not any("blkio" in note for note in notes[1:])

    def test_default_source_is_noted(self) -> None:
        """A policy that came from policy.default says so."""
        _, notes = policy.apply(base_spec(), context("policy: {default: burstable}\n", ("0",)))
        assert notes == ["policy: burstable (from default): oom_score_adj 500, numa placement"]

    def test_unknown_policy_is_an_error_by_default(self) -> None:
        """An annotation naming no configured policy fails the create, listing what exists."""
        with pytest.raises(ShimError, match=r"^policy: unknown policy 'platinum' from "
                                            r"annotation; configured: burstable, guaranteed$"):
            policy.apply(base_spec("platinum"), context(gpus=("5",)))

    def test_policy_cannot_be_defined_by_annotation(self) -> None:
        """Dropping a shipped policy from config makes its name unknown, whatever the image
        says."""
        with pytest.raises(ShimError, match="unknown policy 'guaranteed'"):
            policy.apply(base_spec("guaranteed"), context(CUSTOM, ("5",)))

    def test_resources_that_are_not_an_object_are_an_error(self) -> None:
        """A malformed linux.resources is reported, not overwritten."""
        spec = base_spec("guaranteed")
        spec["linux"]["resources"] = ["weight"]
        with pytest.raises(ShimError, match=r"^policy: config\.json linux\.resources is list"):
            policy.apply(spec, context(gpus=("5",)))


@pytest.mark.parametrize(("weight", "valid"), [(9, False), (10, True), (1000, True),
                                               (1001, False)])
def test_config_holds_blkio_weight_to_kernel_range(weight: int, valid: bool) -> None:
    """Only weights the kernel accepts (10-1000) pass config validation."""
    text = f"policies: {{p: {{blkio_weight: {weight}}}}}\n"
    if valid:
        assert config_mod.parse(text, "t.yaml").policies["p"].blkio_weight == weight
    else:
        with pytest.raises(config_mod.ConfigError, match=r"policies\.p\.blkio_weight"):
            config_mod.parse(text, "t.yaml")


# --- each shipped policy through the whole pipeline ---------------------------------------------

@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A two-socket host's sysfs: node 0 has CPUs 0-63, node 1 has 64-127."""
    for node, cpus in ((0, "0-63"), (1, "64-127")):
        directory = tmp_path / "devices" / "system" / "node" / f"node{node}"
        directory.mkdir(parents=True)
        (directory / "cpulist").write_text(cpus + "\n")
    return tmp_path


PIPELINE_CASES = [
    # (description, annotation, own oom, CAP_SYS_RESOURCE, config, expected oomScoreAdj,
    #  expected cpu, memory, blockIO, cgroupsPath)
    ("guaranteed with the capability", "guaranteed", 0, True, "", -800,
     {"cpus": "64-127", "mems": "1"}, {"limit": 8 * GIB, "swap": 8 * GIB}, {"weight": 800},
     None),
    ("guaranteed clamped to the runtime's own score", "guaranteed", 100, False, "", 100,
     {"cpus": "64-127", "mems": "1"}, {"limit": 8 * GIB, "swap": 8 * GIB}, {"weight": 800},
     None),
    ("guaranteed clamped to the floor", "guaranteed", 0, True, "oom: {floor: -500}\n", -500,
     {"cpus": "64-127", "mems": "1"}, {"limit": 8 * GIB, "swap": 8 * GIB}, {"weight": 800},
     None),
    ("burstable", "burstable", 0, False, "", 500,
     {"cpus": "64-127", "mems": "1"}, {"limit": 8 * GIB}, None, None),
    ("a policy's cgroup parent replaces the configured one", "train", 0, True,
     "cgroup: {parent: ai-workload.slice}\n"
     "policies: {train: {cgroup_parent: ai-train.slice, oom_score_adj: -100}}\n", -100,
     None, {"limit": 8 * GIB}, None, "/ai-train.slice/ctr"),
]


@pytest.mark.parametrize(
    ("description", "annotation", "own", "cap", "config", "oom", "cpu", "memory", "block_io",
     "cgroups_path"), PIPELINE_CASES, ids=[c[0] for c in PIPELINE_CASES])
def test_policy_through_pipeline(
        sysfs: Path, description: str, annotation: str, own: int, cap: bool, config: str,
        oom: int, cpu: Optional[dict[str, str]], memory: dict[str, int],
        block_io: Optional[dict[str, int]], cgroups_path: Optional[str]) -> None:
    """GPU 5 of the two-socket host with a policy: every edit the policy makes, in one spec
    that validates against the OCI schema."""
    spec = base_spec(annotation, memory=LIMIT)
    ctx = context(config, ("5",), own_oom=own, cap_sys_resource=cap, sysfs=sysfs)
    result = pipeline.run(spec, ctx).spec
    assert result["process"]["oomScoreAdj"] == oom
    got = resources(result)
    assert (got.get("cpu"), got.get("memory"), got.get("blockIO")) == (cpu, memory, block_io)
    assert result["linux"].get("cgroupsPath") == cgroups_path
    assert config_errors(result) == []
