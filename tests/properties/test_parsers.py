"""Properties of every parser that reads untrusted input: whatever the input, they return a
value or raise their own error type (a ShimError: one line for the user), never anything else.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest, parse_request
from gpu_core.requirements import GpuFacts, RequirementError, check, parse_requirement
from hook.state import State, parse_state
from runtime_shim import argv
from runtime_shim.bundle import parse_spec, serialise

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
"""Any JSON document, small."""

ENV_NAMES = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
             "NVIDIA_REQUIRE_ARCH", "NVIDIA_DISABLE_REQUIRE", "NVIDIA_MIG_CONFIG_DEVICES",
             "NVIDIA_MIG_MONITOR_DEVICES", "CUDA_VERSION", "NVIDIA_REQUIRE_JETPACK", "PATH")
TOKENS = ("0", "7", "all", "none", "void", "0:1", "mig-1g.10gb", "1.mig-3g.40gb",
          "GPU-0f2b", "MIG-9c1d", "00000000:07:00.0", "compute", "utility", "all", "true",
          "cuda>=12.0", "arch=8.0 brand=tesla", "driver<535", ",", " ", "\n", "\x00")
env_values = st.lists(st.sampled_from(TOKENS) | st.text(max_size=12), max_size=6).map(
    ",".join)
env_entries = st.lists(
    st.builds(lambda n, v: f"{n}={v}", st.sampled_from(ENV_NAMES), env_values)
    | st.text(max_size=16) | json_values, max_size=8)
mounts = st.lists(
    st.fixed_dictionaries({}, optional={
        "source": st.sampled_from(["/dev/null", "/dev//null", "/x"]) | json_values,
        "destination": st.sampled_from(["/var/run/nvidia-container-devices/0",
                                        "/var/run/nvidia-container-devices/all",
                                        "/var/run/nvidia-container-devices/imex/1",
                                        "/var/run/nvidia-container-devices/../x"])
        | json_values})
    | json_values, max_size=4)
specs = st.fixed_dictionaries({}, optional={
    "process": st.fixed_dictionaries({}, optional={
        "env": env_entries | json_values,
        "capabilities": st.fixed_dictionaries({}, optional={
            "bounding": st.lists(st.sampled_from(["CAP_SYS_ADMIN", "CAP_CHOWN"]) | json_values,
                                 max_size=3) | json_values}) | json_values,
    }) | json_values,
    "mounts": mounts | json_values,
    "annotations": json_values,
})
"""config.json documents shaped like the fields the request parser reads, each field also
allowed any JSON value."""

CONFIGS = {
    text: config_mod.parse(text, "property.yaml")
    for text in ("", "requests: {env_unprivileged: false}", "requests: {volume_mounts: false}",
                 "requests: {disable_require: true}")
}


@FAST
@given(spec=specs, config=st.sampled_from(sorted(CONFIGS)))
def test_request_parsing_returns_a_request_or_raises_shim_error(spec: dict[str, Any],
                                                               config: str) -> None:
    """parse_request on any spec: None, a DeviceRequest, or a ShimError."""
    try:
        result = parse_request(spec, CONFIGS[config])
    except ShimError:
        return
    assert result is None or isinstance(result, DeviceRequest)


requirement_text = st.lists(
    st.sampled_from(["cuda", "driver", "arch", "brand", "cuda>=12.0", ">=", "=", "!=", "<",
                     "12.2", "tesla", "8.0", ",", " ", "..", "-1", "\t"]) | st.text(max_size=8),
    max_size=10).map("".join)


@FAST
@given(text=requirement_text)
def test_requirement_parsing_raises_only_requirement_error(text: str) -> None:
    """parse_requirement on any text: a Requirement or a RequirementError."""
    with contextlib.suppress(RequirementError):
        parse_requirement(text)


facts = st.builds(GpuFacts, cuda=st.sampled_from(["12.2", "", "x", "11"]) | st.text(max_size=6),
                  driver=st.sampled_from(["535.104.05", ""]) | st.text(max_size=6),
                  arch=st.sampled_from(["8.0", "", "7.5"]) | st.text(max_size=4),
                  brand=st.sampled_from(["tesla", "", "nvidia"]) | st.text(max_size=6))


@FAST
@given(requirements=st.lists(requirement_text, max_size=3),
       gpus=st.lists(facts, min_size=1, max_size=3))
def test_requirement_check_raises_only_shim_error(requirements: list[str],
                                                  gpus: list[GpuFacts]) -> None:
    """check() of any requirements against any facts: passes or raises a ShimError."""
    with contextlib.suppress(ShimError):
        check(requirements, gpus)


argv_words = st.lists(
    st.sampled_from(["create", "run", "delete", "state", "--root", "--log", "--log=x",
                     "-root", "--bundle", "-b", "--bundle=/b", "--", "-", "--systemd-cgroup",
                     "--systemd-cgroup=false", "--pid-file", "--console-socket", "ctr"])
    | st.text(max_size=10), max_size=10)


@FAST
@given(words=argv_words)
def test_argv_parsing_never_raises_and_keeps_the_arguments(words: list[str]) -> None:
    """argv.parse on any argv returns an Invocation holding the argv untouched; only create and
    run rewrite config.json, and never an argv runc builds read differently (which the shim
    refuses instead)."""
    invocation = argv.parse(words)
    assert invocation.args == tuple(words)
    assert invocation.rewrites == (invocation.command in ("create", "run")
                                   and not invocation.ambiguous)


@FAST
@given(data=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_config_json_parsing_returns_an_object_or_raises_shim_error(data: bytes) -> None:
    """parse_spec on any bytes: a dict or a ShimError."""
    with contextlib.suppress(ShimError):
        assert isinstance(parse_spec(data), dict)


@FAST
@given(spec=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_config_json_round_trips(spec: dict[str, Any]) -> None:
    """What the shim writes reads back as the same document (key order included): the reading
    is already runc's, so writing it changes nothing runc would see."""
    try:
        read = parse_spec(serialise(spec))
        data = serialise(read)
    except ShimError:
        return  # a type runc refuses, or an unpaired surrogate: refused before any write
    assert list(parse_spec(data).items()) == list(read.items())


state_fields = st.fixed_dictionaries({}, optional={
    "ociVersion": st.just("1.0.2") | json_values, "id": st.just("c1") | json_values,
    "status": st.sampled_from(["creating", "created", "flying"]) | json_values,
    "pid": st.integers(min_value=-2, max_value=1 << 33) | json_values,
    "bundle": st.sampled_from(["/b", "b", "/a\x00b"]) | json_values,
    "annotations": json_values})


@FAST
@given(data=st.binary(max_size=100) | state_fields.map(lambda v: json.dumps(v).encode()))
def test_state_parsing_returns_a_state_or_raises_shim_error(data: bytes) -> None:
    """parse_state on any bytes: a State or a ShimError."""
    with contextlib.suppress(ShimError):
        assert isinstance(parse_state(data), State)


yaml_text = st.lists(
    st.sampled_from(["hook:", "  timeout: 5", "runtimes: [runc]", "- x", "{", "}", "!!python/"
                     "name:os.system", "&a [1]", "*a", "retry: {attempts: -1}", "policies:",
                     "  p: {oom_score_adj: 1}", "\t", ": :", "log: {file: ''}"])
    | st.text(max_size=12), max_size=6).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yaml_text)
def test_config_yaml_parsing_returns_a_config_or_raises_config_error(text: str) -> None:
    """config.parse on any text: a Config or a ConfigError."""
    with contextlib.suppress(config_mod.ConfigError):
        assert isinstance(config_mod.parse(text, "property.yaml"), config_mod.Config)
