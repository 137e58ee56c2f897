"""Hook injection: our entry for GPU containers, stale and legacy entries removed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runtime_shim.cdi_injection import Injection
from runtime_shim.modifiers import hook_injection
from runtime_shim.testing import GPU0, context

OURS = {"path": "/usr/bin/gpu-container-hook", "args": ["gpu-container-hook", "prestart"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "GPU_CONTAINER_SHIM_CONFIG=test.yaml"], "timeout": 30}
LEGACY = {"path": "/usr/bin/nvidia-container-runtime-hook", "args": ["x", "prestart"]}
OTHER = {"path": "/usr/bin/other-hook"}

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("adds the entry when there are no hooks", {"ociVersion": "1.0.2"},
     {"ociVersion": "1.0.2", "hooks": {"prestart": [OURS]}}),
    ("keeps other hooks before ours", {"hooks": {"prestart": [OTHER]}},
     {"hooks": {"prestart": [OTHER, OURS]}}),
    ("replaces NVIDIA's legacy hook", {"hooks": {"prestart": [LEGACY, OTHER]}},
     {"hooks": {"prestart": [OTHER, OURS]}}),
    ("drops a stale copy of ours with other args",
     {"hooks": {"prestart": [{"path": "/opt/old/gpu-container-hook", "args": ["a"]}]}},
     {"hooks": {"prestart": [OURS]}}),
    ("removes ours from createRuntime when the stage is prestart",
     {"hooks": {"createRuntime": [OURS, OTHER]}},
     {"hooks": {"createRuntime": [OTHER], "prestart": [OURS]}}),
    ("leaves other stages alone", {"hooks": {"poststop": [OTHER]}},
     {"hooks": {"poststop": [OTHER], "prestart": [OURS]}}),
]


@pytest.mark.parametrize(("description", "spec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hook_injection_whole_spec(description: str, spec: dict[str, Any],
                                   expected: dict[str, Any]) -> None:
    """The GPU container's spec gains exactly our hook, stale and legacy entries removed."""
    before = copy.deepcopy(spec)
    result, _ = hook_injection.apply(spec, context(request=GPU0))
    assert result == expected
    assert spec == before


@pytest.mark.parametrize(("description", "spec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hook_injection_is_idempotent(description: str, spec: dict[str, Any],
                                      expected: dict[str, Any]) -> None:
    """Applying the modifier to its own output returns the same object with no notes."""
    ctx = context(request=GPU0)
    once, _ = hook_injection.apply(spec, ctx)
    twice, notes = hook_injection.apply(once, ctx)
    assert twice is once and notes == []


def test_non_gpu_container_is_untouched() -> None:
    """A container without a device request keeps even NVIDIA's legacy hook."""
    spec = {"hooks": {"prestart": [LEGACY]}}
    assert hook_injection.apply(spec, context())[0] is spec


def test_create_runtime_stage_and_timeout_from_config() -> None:
    """hook.stage and hook.timeout from config shape the entry."""
    ctx = context("hook: {stage: createRuntime, timeout: 7, path: /opt/h}\n", request=GPU0)
    result, _ = hook_injection.apply({}, ctx)
    entry = result["hooks"]["createRuntime"][0]
    assert (entry["path"], entry["args"], entry["timeout"]) == ("/opt/h", ["h", "createRuntime"], 7)


def test_entry_env_is_explicit_and_clean() -> None:
    """The hook's environment is ours alone: PATH and the config path, nothing from the image."""
    spec = {"process": {"env": ["LD_PRELOAD=/evil.so", "PYTHONPATH=/x"]}}
    result, _ = hook_injection.apply(spec, context(request=GPU0))
    env = result["hooks"]["prestart"][0]["env"]
    assert all(not e.startswith(("LD_", "PYTHON")) for e in env)


@pytest.mark.parametrize("request_", [GPU0, None], ids=["gpu request", "void"])
def test_cdi_injected_spec_gets_no_hook(request_: Any) -> None:
    """The engine mounted the driver from its CDI spec: our hook would mount it again."""
    spec = {"hooks": {"createContainer": [{"path": "/usr/bin/nvidia-cdi-hook"}]}}
    ctx = context(request=request_, injected=Injection((0,), ("/dev/nvidia0 (195:0)",)))
    result, notes = hook_injection.apply(spec, ctx)
    assert result is spec
    assert notes == ["hook: not injected: the engine injected the driver from a CDI spec"]


def test_spec_mode_injects_no_hook() -> None:
    spec = {"hooks": {"prestart": [OTHER]}}
    result, notes = hook_injection.apply(spec, context("mode: spec", request=GPU0))
    assert result is spec and notes == []


def test_spec_mode_removes_a_stale_copy_of_our_hook_and_the_legacy_one() -> None:
    spec = {"hooks": {"prestart": [OURS, OTHER], "createRuntime": [LEGACY]}}
    result, notes = hook_injection.apply(spec, context("mode: spec", request=GPU0))
    assert result == {"hooks": {"prestart": [OTHER], "createRuntime": []}}
    assert notes == ["hook: spec mode: removed 2 stale or legacy hook entries"]


def test_spec_mode_keeps_the_spec_hook() -> None:
    spec_hook = {"path": "/usr/bin/gpu-container-spec-hook", "args": ["gpu-container-spec-hook"]}
    spec = {"hooks": {"createContainer": [spec_hook]}}
    result, _ = hook_injection.apply(spec, context("mode: spec", request=GPU0))
    assert result is spec
