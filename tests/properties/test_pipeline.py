"""Properties of the modifier pipeline over generated config.json documents: applying it twice
equals applying it once, it never mutates its input, and fields it does not know survive."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gpu_core.errors import ShimError
from gpu_core.request import parse_request
from gpu_core.testing import fake_inventory, gpu_uuid
from runtime_shim import pipeline
from runtime_shim.context import Context
from runtime_shim.testing import context

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
"""No ``filter_too_much`` suppression: the ``assume`` calls below fail loudly if generated specs
were mostly refused, so the properties cannot hold vacuously."""

CONFIGS = (
    "",
    "cgroup: {parent: ai-workload.slice}\npolicy: {default: guaranteed}\n",
    "oom: {inherit: false, floor: -500}\npolicy: {default: burstable, unknown: ignore}\n",
    "hook: {stage: createRuntime, timeout: 9}\ncgroup: {parent: ai.slice, "
    "move_kubernetes_pods: true}\n",
    # spec mode over a small driver tree (libcuda, nvidia-smi) kept beside this file
    f"mode: spec\nhost: {{driver_root: {Path(__file__).parent / 'driver_root'}}}\n",
)
INVENTORY = fake_inventory(4, numa=False)

json_leaf = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6)
json_values = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
unknown_keys = st.text(min_size=1, max_size=8).map(lambda k: "x-" + k)
"""Keys no OCI version defines (and no modifier reads)."""

devices = st.lists(st.sampled_from(["0", "1", "3", "all", "none", gpu_uuid(2),
                                    "00000000:0F:00.0"]), min_size=1, max_size=3).map(",".join)
capabilities = st.lists(st.sampled_from(["compute", "utility", "video", "graphics", "display",
                                         "all"]), max_size=3).map(",".join)


@st.composite
def specs(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """A GPU container's config.json with the fields the modifiers touch drawn at random, and
    the paths of the unknown fields planted in it."""
    env = ["PATH=/bin", f"NVIDIA_VISIBLE_DEVICES={draw(devices)}"]
    if draw(st.booleans()):
        env.append(f"NVIDIA_DRIVER_CAPABILITIES={draw(capabilities)}")
    process: dict[str, Any] = {"args": ["true"], "env": env}
    if draw(st.booleans()):
        process["oomScoreAdj"] = draw(st.integers(-1000, 1000))
    linux: dict[str, Any] = {}
    if draw(st.booleans()):
        linux["cgroupsPath"] = draw(st.sampled_from(
            ["system.slice:docker:abc", "/docker/abc", "/kubepods/pod1/c1", "/custom/c1",
             "kubepods-pod1.slice:cri:c1"]))
    resources: dict[str, Any] = {}
    if draw(st.booleans()):
        resources["devices"] = [{"allow": False, "access": "rwm"}]
    if draw(st.booleans()):
        resources["memory"] = {"limit": draw(st.integers(1 << 20, 1 << 34))}
    if draw(st.booleans()):
        resources["cpu"] = {"shares": draw(st.integers(2, 1024))}
    if resources:
        linux["resources"] = resources
    spec: dict[str, Any] = {"ociVersion": "1.0.2", "process": process, "root": {"path": "rootfs"},
                            "linux": linux}
    if draw(st.booleans()):
        spec["hooks"] = {"prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook",
                                       "args": ["nvidia-container-runtime-hook", "prestart"]}]}
    if draw(st.booleans()):
        spec["annotations"] = {"ai.scheduling.policy": draw(st.sampled_from(
            ["guaranteed", "burstable"]))}
    planted: list[tuple[str, ...]] = []
    for parent in ((), ("process",), ("linux",), ("linux", "resources"), ("hooks",)):
        for key in draw(st.lists(unknown_keys, max_size=2, unique=True)):
            node = spec
            for name in parent:
                node = node.setdefault(name, {})
            node[key] = draw(json_values)
            planted.append((*parent, key))
    return spec, planted


def fresh_context(config_text: str, spec: dict[str, Any]) -> Context:
    ctx = context(config_text)
    ctx.request = parse_request(spec, ctx.config)
    ctx.discover = lambda: INVENTORY
    return ctx


def value_at(spec: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = spec
    for key in path:
        node = node[key]
    return node


def run(spec: dict[str, Any], config_text: str) -> Optional[pipeline.Result]:
    """The pipeline's result, or None when it refused the spec with a ShimError."""
    try:
        return pipeline.run(spec, fresh_context(config_text, spec))
    except ShimError:
        return None


@SETTINGS
@given(drawn=specs(), config_text=st.sampled_from(CONFIGS))
def test_applying_the_pipeline_twice_equals_applying_it_once(
        drawn: tuple[dict[str, Any], list[tuple[str, ...]]], config_text: str) -> None:
    """A second run over the first run's output changes nothing (notes may still explain why
    a policy value stays as it is)."""
    spec, _ = drawn
    first = run(spec, config_text)
    assume(first is not None and first.changed)  # hypothesis fails if that is rare
    assert first is not None
    second = pipeline.run(first.spec, fresh_context(config_text, first.spec))
    assert not second.changed
    assert second.spec == first.spec


@SETTINGS
@given(drawn=specs(), config_text=st.sampled_from(CONFIGS))
def test_the_input_spec_is_never_mutated(drawn: tuple[dict[str, Any], list[tuple[str, ...]]],
                                         config_text: str) -> None:
    """The pipeline copies what it changes: the spec it was given is as it was."""
    spec, _ = drawn
    before = copy.deepcopy(spec)
    run(spec, config_text)
    assert spec == before


@SETTINGS
@given(drawn=specs(), config_text=st.sampled_from(CONFIGS))
def test_unknown_fields_survive(drawn: tuple[dict[str, Any], list[tuple[str, ...]]],
                                config_text: str) -> None:
    """Every field no modifier knows, at the top level and inside process, linux,
    linux.resources and hooks, comes out with its value."""
    spec, planted = drawn
    result = run(spec, config_text)
    assume(result is not None and result.changed)
    assert result is not None
    for path in planted:
        assert value_at(result.spec, path) == value_at(spec, path), path


def any_or(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field's expected shape, or any JSON value at all."""
    return strategy | json_values


hostile_specs = st.fixed_dictionaries(
    {"process": st.fixed_dictionaries(
        {"env": st.just(["NVIDIA_VISIBLE_DEVICES=0"])},
        optional={"oomScoreAdj": json_values,
                  "capabilities": any_or(st.fixed_dictionaries({"bounding": json_values}))})},
    optional={
        "hooks": any_or(st.fixed_dictionaries({}, optional={
            "prestart": any_or(st.lists(any_or(st.fixed_dictionaries({
                "path": any_or(st.just("/usr/bin/gpu-container-hook")),
                "args": json_values})), max_size=2)),
            "createRuntime": json_values})),
        "linux": any_or(st.fixed_dictionaries({}, optional={
            "cgroupsPath": json_values, "devices": json_values,
            "resources": any_or(st.fixed_dictionaries({}, optional={
                "devices": json_values, "memory": any_or(st.fixed_dictionaries(
                    {}, optional={"limit": json_values, "swap": json_values})),
                "cpu": any_or(st.fixed_dictionaries({}, optional={"cpus": json_values,
                                                                  "mems": json_values})),
                "blockIO": json_values}))})),
        "annotations": any_or(st.fixed_dictionaries({"ai.scheduling.policy": json_values})),
        "mounts": json_values,
    })
"""A GPU container whose every field a modifier reads may have any JSON type."""


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=hostile_specs, config_text=st.sampled_from(CONFIGS))
def test_the_pipeline_raises_only_shim_error(spec: dict[str, Any], config_text: str) -> None:
    """Wrong types anywhere a modifier looks are a one-line ShimError, never a crash."""
    run(spec, config_text)
