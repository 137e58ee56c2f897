"""The pipeline table: GPU-only modifiers are skipped, and never imported, for a container that
asks for no GPU; that skip must never change a result."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import pytest

from gpu_core.errors import ShimError
from runtime_shim import pipeline
from runtime_shim.cdi_injection import Injection
from runtime_shim.testing import context

CONFIGS = [
    "",
    "cgroup: {parent: ai-workload.slice}\npolicy: {default: guaranteed}\n",
    "oom: {inherit: false}\npolicy: {default: burstable, unknown: ignore}\n",
]

SPECS: list[dict[str, Any]] = [
    {"ociVersion": "1.0.2", "process": {"args": ["true"], "env": ["PATH=/bin"]}, "linux": {}},
    {"ociVersion": "1.0.2", "process": {"args": ["true"], "oomScoreAdj": -999},
     "annotations": {"ai.scheduling.policy": "guaranteed"},
     "hooks": {"prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook"}]},
     "linux": {"cgroupsPath": "system.slice:docker:abc",
               "resources": {"cpu": {"cpus": "0-1"}}}},
    {"ociVersion": "1.0.2", "process": {"args": ["true"], "env": ["AI_SCHEDULING_POLICY=x"]},
     "mounts": [{"destination": "/data", "source": "/d", "type": "bind"}],
     "linux": {"cgroupsPath": "/kubepods/pod1/c1"}},
]


def modifier(name: str) -> pipeline.Modifier:
    return dict(pipeline.ORDER)[name]


@pytest.mark.parametrize("name", sorted(pipeline.GPU_ONLY))
@pytest.mark.parametrize("config_text", CONFIGS)
@pytest.mark.parametrize("index", range(len(SPECS)))
def test_gpu_only_modifiers_return_their_input_without_a_request(name: str, config_text: str,
                                                                 index: int) -> None:
    """Skipping a GPU-only modifier for a non-GPU container changes nothing: it would have
    returned the very same spec with no notes."""
    spec = SPECS[index]
    result, notes = modifier(name)(spec, context(config_text))
    assert result is spec and notes == []


def test_gpu_only_names_are_in_the_table() -> None:
    """Every name the skip refers to is a modifier of the table."""
    assert pipeline.GPU_ONLY.issubset(name for name, _ in pipeline.ORDER)


def every_modifier(spec: dict[str, Any], config_text: str) -> object:
    """The spec after every modifier of the table, or the error it raised."""
    ctx = context(config_text)
    try:
        for _, modify in pipeline.ORDER:
            spec, _ = modify(spec, ctx)
    except ShimError as error:
        return str(error)
    return spec


def with_skip(spec: dict[str, Any], config_text: str) -> object:
    try:
        return pipeline.run(spec, context(config_text)).spec
    except ShimError as error:
        return str(error)


@pytest.mark.parametrize("config_text", CONFIGS)
@pytest.mark.parametrize("index", range(len(SPECS)))
def test_skip_gives_the_result_of_running_everything(config_text: str, index: int) -> None:
    """The pipeline with the skip ends as the table run modifier by modifier (same spec, or
    the same error)."""
    assert with_skip(SPECS[index], config_text) == every_modifier(SPECS[index], config_text)


@pytest.mark.parametrize("name", [name for name, _ in pipeline.ORDER])
def test_lazy_entries_run_the_modules_apply(name: str) -> None:
    """Each table entry imports its module and calls that module's apply."""
    entry = modifier(name)
    module = importlib.import_module(entry.__name__.rsplit(".", 1)[0])
    spec = SPECS[0]
    assert entry(spec, context()) == module.apply(spec, context())


PROBE = """
import json, sys
from runtime_shim import pipeline
from runtime_shim.cdi_injection import Injection
from runtime_shim.testing import context
pipeline.run(json.loads(sys.argv[1]), context("cgroup: {parent: ai-workload.slice}"))
heavy = ("gpu_core.selection", "gpu_core.discovery", "gpu_core.inventory", "gpu_core.nvml_query",
         "gpu_core.nvml_lib", "pynvml",
         "runtime_shim.modifiers.devices", "runtime_shim.modifiers.mig_lease",
         "runtime_shim.modifiers.numa")
print(json.dumps(sorted(m for m in sys.modules
                        if m in heavy or m == "leases" or m.startswith("leases."))))
"""


def test_non_gpu_container_imports_no_gpu_modules() -> None:
    """A container without a GPU request loads none of discovery, selection or leases."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(SPECS[1])],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


TOKENS = ["0", "12", "GPU-6d4038db-c6de-43eb-9d7d-ecf72e1e7f91", "0000:3b:00.0",
          "MIG-6d4038db-c6de-43eb-9d7d-ecf72e1e7f91", "0:1", "mig-1g.10gb", "MIG-3g.40GB",
          "0.mig-1g.10gb", "GPU-6d4038db-c6de-43eb-9d7d-ecf72e1e7f91.mig-2g.20gb",
          "mig-", "mig-1g", "all", "none", "x.mig-1g.10gb", "0.mig-", "MIG-GPU-ab/0/1"]


@pytest.mark.parametrize("token", TOKENS)
def test_profile_kinds_are_what_selection_parses_as_profiles(token: str) -> None:
    """mig_lease's early exit looks at token kinds; they name exactly the profile tokens."""
    from gpu_core.request import device_token_kind
    from gpu_core.selection import parse_profile
    from runtime_shim.modifiers import mig_lease

    assert (device_token_kind(token) in mig_lease.PROFILE_KINDS) == \
        (parse_profile(token) is not None)


LEASE_PROBE = """
import json, sys
from gpu_core.request import DeviceRequest
from runtime_shim import pipeline
from runtime_shim.cdi_injection import Injection
from runtime_shim.testing import context
request = DeviceRequest(devices=("0",), capabilities=frozenset({"utility"}))
ctx = context("", request=request)
ctx.discover = lambda: (_ for _ in ()).throw(SystemExit("no discovery in this probe"))
spec, notes = dict(pipeline.ORDER)["mig-lease"](json.loads(sys.argv[1]), ctx)
print(json.dumps([notes, sorted(m for m in sys.modules
                                if m == "leases" or m.startswith("leases."))]))
"""


def test_gpu_request_without_mig_tokens_skips_the_lease_store() -> None:
    """A GPU container naming no MIG device leaves mig-lease before it loads the lease store."""
    done = subprocess.run([sys.executable, "-c", LEASE_PROBE, json.dumps(SPECS[0])],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [[], []]


INJECTED_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "process": {"args": ["true"], "env": ["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=void"]},
    "linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}],
              "resources": {"memory": {"limit": 1 << 30}}}}


def test_cdi_injected_void_container_gets_its_policy_but_no_devices_or_hook() -> None:
    """The engine's /dev/nvidia0 with NVIDIA_VISIBLE_DEVICES=void: a GPU container for the
    policies (the default GPU policy applies), with nothing added to its devices or hooks."""
    ctx = context("policy: {default: gpu}\n"
                  "policies: {gpu: {oom_score_adj: -500, swap_off: true}}\n",
                  injected=Injection((0,), ("/dev/nvidia0 (195:0)",)))
    result = pipeline.run(INJECTED_SPEC, ctx)
    assert result.spec["linux"]["devices"] == INJECTED_SPEC["linux"]["devices"]
    assert "hooks" not in result.spec
    assert result.spec["process"]["oomScoreAdj"] == -500
    assert result.spec["linux"]["resources"]["memory"]["swap"] == 1 << 30
    assert [name for name, _ in result.notes] == ["devices", "hook", "policy", "oom"]


@pytest.mark.parametrize("name", sorted(pipeline.GPU_ONLY))
def test_gpu_only_modifiers_return_their_input_for_an_annotation_alone(name: str) -> None:
    """A CDI annotation without a request or GPU node is no GPU container: skipping is exact."""
    spec = {**SPECS[0], "annotations": {"cdi.k8s.io/x": "nvidia.com/gpu=0"}}
    ctx = context(injected=Injection((), ("annotation cdi.k8s.io/x",)))
    assert not ctx.gpu
    result, notes = modifier(name)(spec, ctx)
    assert result is spec and notes == []
