"""Conformance with the NVIDIA Container Toolkit's request semantics, as tables.

The cases are the ones the toolkit's own table tests cover (the hook's container config, the CUDA
image's devices, capabilities, requirements and IMEX channels) and the libnvidia-container
requirement DSL, written for our parser. Where NVIDIA's cases use placeholder device names
(``gpu0``) or placeholder requirements (``req0=true``) we use real token shapes and conditions;
the rule under test is the same. README §Where we differ from NVIDIA lists the deliberate
differences; they have their own tests at the end.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from gpu_core.config import Config, defaults, parse
from gpu_core.errors import ShimError
from gpu_core.request import DeviceRequest, parse_request
from gpu_core.request_words import CAPABILITIES, legacy_cuda_version
from gpu_core.requirements import GpuFacts, RequirementError, check, parse_requirement

ALL = frozenset(CAPABILITIES)
DEFAULT = frozenset({"compute", "utility"})
ADMIN = ["CAP_SYS_ADMIN"]
UUID_A = "GPU-12345"
UUID_B = "GPU-67890"
MIG_A = "MIG-12345"


def spec(env: dict[str, str], privileged: bool = False,
         mounts: Optional[list[str]] = None) -> dict[str, Any]:
    process: dict[str, Any] = {"env": [f"{k}={v}" for k, v in env.items()], "cwd": "/",
                               "args": ["sh"],
                               "capabilities": {"bounding": ADMIN if privileged else []}}
    document: dict[str, Any] = {"ociVersion": "1.2.0", "process": process,
                                "root": {"path": "rootfs"}}
    if mounts is not None:
        document["mounts"] = [{"source": "/dev/null", "type": "bind",
                               "destination": f"/var/run/nvidia-container-devices/{m}"}
                              for m in mounts]
    return document


def config(**requests: Any) -> Config:
    if not requests:
        return defaults()
    body = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {str(v).lower()}"
                     for k, v in requests.items())
    return parse(f"requests: {{{body}}}", "test")


def parsed(env: dict[str, str], privileged: bool = False, mounts: Optional[list[str]] = None,
           **requests: Any) -> Optional[DeviceRequest]:
    return parse_request(spec(env, privileged, mounts), config(**requests))


# --- the hook's container config (devices, capabilities, requirements, MIG) -------------------

LEGACY = {"CUDA_VERSION": "9.0"}
MODERN = {"NVIDIA_REQUIRE_CUDA": "cuda>=9.0"}

CONTAINER_CONFIG = [
    # (description, env, privileged, devices or None, capabilities, requirements)
    ("no environment, unprivileged", {}, False, None, None, None),
    ("no environment, privileged", {}, True, None, None, None),
    ("legacy image, nothing else", LEGACY, False, ("all",), ALL, {"cuda>=9.0"}),
    ("legacy image, devices all", {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "all"}, False, ("all",),
     ALL, {"cuda>=9.0"}),
    ("legacy image, devices empty", {**LEGACY, "NVIDIA_VISIBLE_DEVICES": ""}, False, None, None,
     None),
    ("legacy image, devices void", {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "void"}, False, None,
     None, None),
    ("legacy image, devices none", {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "none"}, False, (), ALL,
     {"cuda>=9.0"}),
    ("legacy image, devices set", {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "0,1"}, False,
     ("0", "1"), ALL, {"cuda>=9.0"}),
    ("legacy image, capabilities empty",
     {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_DRIVER_CAPABILITIES": ""}, False,
     ("0", "1"), DEFAULT, {"cuda>=9.0"}),
    ("legacy image, capabilities all",
     {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_DRIVER_CAPABILITIES": "all"}, False,
     ("0", "1"), ALL, {"cuda>=9.0"}),
    ("legacy image, capabilities set",
     {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_DRIVER_CAPABILITIES": "video,display"},
     False, ("0", "1"), {"video", "display"}, {"cuda>=9.0"}),
    ("legacy image, requirements set",
     {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_REQUIRE_REQ0": "brand=tesla",
      "NVIDIA_REQUIRE_REQ1": "driver>=400"}, False, ("0", "1"), ALL,
     {"cuda>=9.0", "brand=tesla", "driver>=400"}),
    ("legacy image, requirements disabled",
     {**LEGACY, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_REQUIRE_REQ0": "brand=tesla",
      "NVIDIA_DISABLE_REQUIRE": "true"}, False, ("0", "1"), ALL, set()),
    ("modern image without devices", MODERN, False, None, None, None),
    ("modern image with CUDA_VERSION, no devices", {**MODERN, "CUDA_VERSION": "9.0"}, False,
     None, None, None),
    ("modern image, devices all", {**MODERN, "NVIDIA_VISIBLE_DEVICES": "all"}, False, ("all",),
     DEFAULT, {"cuda>=9.0"}),
    ("modern image, devices empty", {**MODERN, "NVIDIA_VISIBLE_DEVICES": ""}, False, None, None,
     None),
    ("modern image, devices void", {**MODERN, "NVIDIA_VISIBLE_DEVICES": "void"}, False, None,
     None, None),
    ("modern image, devices none", {**MODERN, "NVIDIA_VISIBLE_DEVICES": "none"}, False, (),
     DEFAULT, {"cuda>=9.0"}),
    ("modern image, devices set", {**MODERN, "NVIDIA_VISIBLE_DEVICES": "0,1"}, False,
     ("0", "1"), DEFAULT, {"cuda>=9.0"}),
    ("modern image, capabilities empty",
     {**MODERN, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_DRIVER_CAPABILITIES": ""}, False,
     ("0", "1"), DEFAULT, {"cuda>=9.0"}),
    ("modern image, capabilities all",
     {**MODERN, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_DRIVER_CAPABILITIES": "all"}, False,
     ("0", "1"), ALL, {"cuda>=9.0"}),
    ("modern image, requirements disabled",
     {**MODERN, "NVIDIA_VISIBLE_DEVICES": "0,1", "NVIDIA_REQUIRE_REQ0": "brand=tesla",
      "NVIDIA_DISABLE_REQUIRE": "true"}, False, ("0", "1"), DEFAULT, set()),
    ("no CUDA variables, devices all", {"NVIDIA_VISIBLE_DEVICES": "all"}, False, ("all",),
     DEFAULT, set()),
    ("MIG config, privileged",
     {**MODERN, "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_MIG_CONFIG_DEVICES": "all"}, True,
     ("all",), DEFAULT, {"cuda>=9.0"}),
]


@pytest.mark.parametrize(("description", "env", "privileged", "devices", "capabilities",
                          "requirements"), CONTAINER_CONFIG, ids=[c[0] for c in CONTAINER_CONFIG])
def test_container_config(description: str, env: dict[str, str], privileged: bool,
                          devices: Optional[tuple[str, ...]],
                          capabilities: Optional[frozenset[str]],
                          requirements: Optional[set[str]]) -> None:
    """Devices, capabilities and requirements as the toolkit's hook computes them."""
    result = parsed(env, privileged)
    if devices is None:
        assert result is None
        return
    assert result is not None
    assert result.devices == devices
    assert result.capabilities == capabilities
    assert set(result.checked_requirements) == requirements


@pytest.mark.parametrize("variable", ["NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"])
@pytest.mark.parametrize("value", ["all", "mig0,mig1", ",", " "])
def test_mig_control_in_an_unprivileged_container_is_refused(variable: str, value: str) -> None:
    """Either MIG variable set (any non-empty value) in an unprivileged GPU container fails it
    (the toolkit panics)."""
    with pytest.raises(ShimError, match=f"cannot set {variable} in an unprivileged container"):
        parsed({**MODERN, "NVIDIA_VISIBLE_DEVICES": "all", variable: value})


@pytest.mark.parametrize("value", ["mig0,mig1", " all", "all "])
def test_mig_control_other_than_all_fails_in_a_privileged_container(value: str) -> None:
    """The hook passes the value on untrimmed; libnvidia-container accepts only `all`."""
    with pytest.raises(ShimError, match="only 'all' devices are currently supported"):
        parsed({"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_MIG_CONFIG_DEVICES": value}, True)


# --- supported-driver-capabilities and swarm-resource (the hook's configuration) --------------

SUPPORTED = [
    # (description, NVIDIA_DRIVER_CAPABILITIES or None, legacy, supported, expected or "error")
    ("env set, legacy", "display,video", True, "compute,display,utility,video",
     {"display", "video"}),
    ("env all, legacy", "all", True, "compute,display,utility,video",
     {"compute", "display", "utility", "video"}),
    ("env empty, legacy", "", True, "compute,display,utility,video", DEFAULT),
    ("env unset, legacy, is every supported one", None, True, "compute,display,utility,video",
     {"compute", "display", "utility", "video"}),
    ("env set, modern", "display,video", False, "compute,display,utility,video",
     {"display", "video"}),
    ("env unset, modern, is the default", None, False, "compute,display,utility,video", DEFAULT),
    ("env all, modern", "all", False, "compute,display,utility,video",
     {"compute", "display", "utility", "video"}),
    ("env empty, modern", "", False, "compute,display,utility,video", DEFAULT),
    ("asking for what is not supported", "compute,utility", False, "video", "error"),
    ("default restricted to what is supported", None, False, "compute", {"compute"}),
    ("all restricted to what is supported", "all", False, "video,display", {"video", "display"}),
]


@pytest.mark.parametrize(("description", "value", "legacy", "supported", "expected"), SUPPORTED,
                         ids=[c[0] for c in SUPPORTED])
def test_supported_driver_capabilities(description: str, value: Optional[str], legacy: bool,
                                       supported: str, expected: Any) -> None:
    """requests.supported_driver_capabilities caps what a container may ask for."""
    env = {"NVIDIA_VISIBLE_DEVICES": "all", **(LEGACY if legacy else {})}
    if value is not None:
        env["NVIDIA_DRIVER_CAPABILITIES"] = value
    if expected == "error":
        with pytest.raises(ShimError, match="unsupported capability"):
            parsed(env, supported_driver_capabilities=supported)
        return
    result = parsed(env, supported_driver_capabilities=supported)
    assert result is not None and result.capabilities == expected


SWARM = [
    # (description, swarm_resource, env, expected devices or None)
    ("swarm variable overrides NVIDIA_VISIBLE_DEVICES", "DOCKER_SWARM_RESOURCE",
     {"NVIDIA_VISIBLE_DEVICES": "all", "DOCKER_SWARM_RESOURCE": f"{UUID_A},{UUID_B}"},
     (UUID_A, UUID_B)),
    ("comma separated names: the set ones are used", "NOT_SET,DOCKER_SWARM_RESOURCE",
     {"NVIDIA_VISIBLE_DEVICES": "all", "DOCKER_SWARM_RESOURCE": f"{UUID_A},{UUID_B}"},
     (UUID_A, UUID_B)),
    ("unconfigured swarm variable is ignored", "", {"DOCKER_RESOURCE_GPUS": UUID_B}, None),
    ("configured but unset: NVIDIA_VISIBLE_DEVICES", "DOCKER_RESOURCE_GPUS",
     {"NVIDIA_VISIBLE_DEVICES": UUID_A}, (UUID_A,)),
    ("blank swarm variable is no request", "DOCKER_RESOURCE_GPUS",
     {"DOCKER_RESOURCE_GPUS": "", "NVIDIA_VISIBLE_DEVICES": UUID_A}, None),
    ("void swarm variable", "DOCKER_RESOURCE_GPUS", {"DOCKER_RESOURCE_GPUS": "void"}, None),
    ("none swarm variable", "DOCKER_RESOURCE_GPUS", {"DOCKER_RESOURCE_GPUS": "none"}, ()),
    ("swarm beats a legacy image's all", "DOCKER_RESOURCE_GPUS",
     {"DOCKER_RESOURCE_GPUS": UUID_A, "CUDA_VERSION": "9.0"}, (UUID_A,)),
    ("every set swarm variable, in configured order",
     "DOCKER_RESOURCE_GPUS,DOCKER_RESOURCE_GPUS_ADDITIONAL",
     {"NVIDIA_VISIBLE_DEVICES": UUID_A, "DOCKER_RESOURCE_GPUS": MIG_A,
      "DOCKER_RESOURCE_GPUS_ADDITIONAL": UUID_B}, (MIG_A, UUID_B)),
    ("only the additional one set", "DOCKER_RESOURCE_GPUS,DOCKER_RESOURCE_GPUS_ADDITIONAL",
     {"NVIDIA_VISIBLE_DEVICES": UUID_A, "DOCKER_RESOURCE_GPUS_ADDITIONAL": UUID_B}, (UUID_B,)),
]


@pytest.mark.parametrize(("description", "swarm", "env", "expected"), SWARM,
                         ids=[c[0] for c in SWARM])
def test_swarm_resource(description: str, swarm: str, env: dict[str, str],
                        expected: Optional[tuple[str, ...]]) -> None:
    """requests.swarm_resource names Docker Swarm's variables that replace the device list."""
    result = parsed(env, True, swarm_resource=swarm)
    assert (None if result is None else result.devices) == expected
    if result is not None and swarm and any(n in env for n in swarm.split(",")):
        assert result.source == "swarm"


# --- devices from the environment and from mounts ---------------------------------------------

ENV_DEVICES = [
    ("empty env, modern image", {}, None),
    ("blank, modern image", {"NVIDIA_VISIBLE_DEVICES": ""}, None),
    ("void, modern image", {"NVIDIA_VISIBLE_DEVICES": "void"}, None),
    ("none, modern image", {"NVIDIA_VISIBLE_DEVICES": "none"}, ()),
    ("set, modern image", {"NVIDIA_VISIBLE_DEVICES": UUID_A}, (UUID_A,)),
    ("set, legacy image", {"NVIDIA_VISIBLE_DEVICES": UUID_A, "CUDA_VERSION": "9.0"},
     (UUID_A,)),
    ("unset, legacy image", {"CUDA_VERSION": "9.0"}, ("all",)),
    ("all then none: the first wins", {"NVIDIA_VISIBLE_DEVICES": "all,none"}, ("all",)),
    ("none then all: the first wins", {"NVIDIA_VISIBLE_DEVICES": "none,all"}, ()),
    ("a device then all", {"NVIDIA_VISIBLE_DEVICES": f"{UUID_A},all"}, ("all",)),
    ("void anywhere wins", {"NVIDIA_VISIBLE_DEVICES": "all,void"}, None),
]


@pytest.mark.parametrize(("description", "env", "expected"), ENV_DEVICES,
                         ids=[c[0] for c in ENV_DEVICES])
def test_devices_from_the_environment(description: str, env: dict[str, str],
                                      expected: Optional[tuple[str, ...]]) -> None:
    result = parsed(env, True)
    assert (None if result is None else result.devices) == expected


VISIBLE = [
    # (description, mounts, env devices, privileged, env_unprivileged, volume_mounts, expected)
    ("mounts, unprivileged, env not accepted", ["0", "1"], "2,3", False, False, True,
     ("0", "1")),
    ("no mounts, unprivileged, env not accepted", None, "0,1", False, False, True, None),
    ("no mounts, privileged, env not accepted", None, "0,1", True, False, True, ("0", "1")),
    ("no mounts, unprivileged, env accepted", None, "0,1", False, True, True, ("0", "1")),
    ("mounts not accepted, env accepted", ["0", "1"], "2,3", False, True, False, ("2", "3")),
    ("mounts and env not accepted", ["0", "1"], "2,3", False, False, False, None),
    ("slashes in a mount name", ["MIG-GPU-12345/0/1"], "", True, True, True,
     ("MIG-GPU-12345/0/1",)),
    ("imex mounts are not devices", ["0", "imex/0", "1"], "", True, True, True, ("0", "1")),
    ("a cdi mount naming no device is skipped", ["cdi/nvidia.com"], "2", True, True, True,
     ("2",)),
    ("a comma in a mount name separates devices", ["0,1"], "", True, True, True, ("0", "1")),
    ("all after devices in a mount list", ["0", "all"], "", True, True, True, ("all",)),
]


def test_mount_list_is_read_in_order_like_the_cli() -> None:
    """A mount list reaches libnvidia-container as it is: a bad device before `all` fails."""
    with pytest.raises(ShimError, match="unknown device bogus"):
        parsed({}, True, ["bogus", "all"])


@pytest.mark.parametrize(("description", "mounts", "env_devices", "privileged", "accept_env",
                          "accept_mounts", "expected"), VISIBLE, ids=[c[0] for c in VISIBLE])
def test_visible_devices(description: str, mounts: Optional[list[str]], env_devices: str,
                         privileged: bool, accept_env: bool, accept_mounts: bool,
                         expected: Optional[tuple[str, ...]]) -> None:
    """Mount lists first (when accepted), then the env (privileged, or when accepted)."""
    env = {"NVIDIA_VISIBLE_DEVICES": env_devices} if env_devices else {}
    result = parsed(env, privileged, mounts, env_unprivileged=accept_env,
                    volume_mounts=accept_mounts)
    assert (None if result is None else result.devices) == expected


# --- IMEX channels ----------------------------------------------------------------------------

IMEX = [
    ("no channels", {}, None, ()),
    ("channels from the variable", {"NVIDIA_IMEX_CHANNELS": "3,4"}, None, ("3", "4")),
    ("channels from the variable, legacy image",
     {"NVIDIA_IMEX_CHANNELS": "3,4", "CUDA_VERSION": "1.2.3"}, None, ("3", "4")),
    ("all asks for no channel", {"NVIDIA_IMEX_CHANNELS": "all"}, None, ()),
    ("none and void ask for none", {"NVIDIA_IMEX_CHANNELS": "none"}, None, ()),
    ("a word beside channels wins", {"NVIDIA_IMEX_CHANNELS": "3,void"}, None, ()),
    ("mounts beat the variable", {"NVIDIA_IMEX_CHANNELS": "3"}, ["imex/1", "imex/2"], ("1", "2")),
]


def test_imex_words_are_lower_case_only() -> None:
    """The toolkit passes `ALL` on as a channel, which is no channel number: the start fails."""
    with pytest.raises(ShimError, match="IMEX channel ALL: expected a channel number"):
        parsed({"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_IMEX_CHANNELS": "ALL"}, True)


@pytest.mark.parametrize(("description", "env", "mounts", "expected"), IMEX,
                         ids=[c[0] for c in IMEX])
def test_imex_channels(description: str, env: dict[str, str], mounts: Optional[list[str]],
                       expected: tuple[str, ...]) -> None:
    result = parsed({"NVIDIA_VISIBLE_DEVICES": "0", **env}, True, mounts)
    assert result is not None and result.imex_channels == expected


# --- requirements and the legacy version ------------------------------------------------------

REQUIREMENTS = [
    ("JETPACK is ignored", {"NVIDIA_REQUIRE_JETPACK": "csv-mounts=all"}, set()),
    ("JETPACK_HOST_MOUNTS is ignored", {"NVIDIA_REQUIRE_JETPACK_HOST_MOUNTS": "base-only"},
     set()),
    ("single requirement", {"NVIDIA_REQUIRE_CUDA": "cuda>=11.6"}, {"cuda>=11.6"}),
    ("requirements concatenated",
     {"NVIDIA_REQUIRE_CUDA": "cuda>=11.6", "NVIDIA_REQUIRE_BRAND": "brand=tesla"},
     {"cuda>=11.6", "brand=tesla"}),
    ("legacy image", {"CUDA_VERSION": "11.6"}, {"cuda>=11.6"}),
    ("legacy image with another requirement",
     {"CUDA_VERSION": "11.6", "NVIDIA_REQUIRE_BRAND": "brand=tesla"},
     {"cuda>=11.6", "brand=tesla"}),
    ("legacy rule uses major.minor", {"CUDA_VERSION": "9.0.176"}, {"cuda>=9.0"}),
    ("disable ignores requirements",
     {"NVIDIA_REQUIRE_CUDA": "cuda>=11.6", "NVIDIA_DISABLE_REQUIRE": "true"}, set()),
    ("disable ignores the legacy rule",
     {"CUDA_VERSION": "11.6", "NVIDIA_REQUIRE_BRAND": "brand=tesla",
      "NVIDIA_DISABLE_REQUIRE": "true"}, set()),
    ("disable skips an invalid legacy version",
     {"CUDA_VERSION": "foo", "NVIDIA_DISABLE_REQUIRE": "1"}, set()),
]


@pytest.mark.parametrize(("description", "env", "expected"), REQUIREMENTS,
                         ids=[c[0] for c in REQUIREMENTS])
def test_requirements(description: str, env: dict[str, str], expected: set[str]) -> None:
    result = parsed({"NVIDIA_VISIBLE_DEVICES": "0", **env})
    assert result is not None and set(result.checked_requirements) == expected


def test_legacy_requirement_names_its_source() -> None:
    """The added requirement is recorded as coming from the legacy rule."""
    result = parsed({"CUDA_VERSION": "10.2.89"})
    assert result is not None
    assert list(zip(result.requirements, result.requirement_sources)) == [
        ("cuda>=10.2", "legacy:CUDA_VERSION")]


@pytest.mark.parametrize(("version", "expected"), [
    ("0", "0.0"), ("8", "8.0"), ("7.5", "7.5"), ("9.0.116", "9.0"),
    ("4294967295.4294967295.4294967295", "4294967295.4294967295"), ("v11.6", "11.6"),
    ("12.2.0-rc1", "12.2"), ("12.2.0+build.5", "12.2"), ("12.2.0-rc.1+b.2", "12.2"),
    ("1.0.0-0a", "1.0"),
])
def test_legacy_version_valid(version: str, expected: str) -> None:
    assert legacy_cuda_version(version) == expected


@pytest.mark.parametrize("version", [
    "foo", "foo.5.10", "9.0.116.50", "9.0.116foo", "7.foo", "9.0.bar", "9.4294967296",
    "9.0.116.", "9..0", "9.", ".5.10", "-9", "+9", "-9.1.116", "-9.-1.-116", "", "1.0.0-01",
    "\u0661\u0662", "09.01", "9.01", "12.2-rc1", "12-rc1", "1.2.3-", "1.2.3+", "vv1", "V11.6",
    "1.2.3-a..b", " 11.6",
])
def test_legacy_version_invalid(version: str) -> None:
    with pytest.raises(ShimError, match="CUDA_VERSION: invalid CUDA version"):
        legacy_cuda_version(version)


def test_legacy_image_with_an_invalid_version_fails_in_one_line() -> None:
    """The start fails naming the variable and the value."""
    with pytest.raises(ShimError) as info:
        parsed({"CUDA_VERSION": "9.0.bar"})
    assert str(info.value).startswith("request: CUDA_VERSION: invalid CUDA version 9.0.bar")
    assert "\n" not in str(info.value)


# --- the requirement DSL (libnvidia-container) ------------------------------------------------

HOST = GpuFacts(cuda="12.2", driver="535.104.05", arch="8.0", brand="Tesla")

DSL = [
    # (requirement, holds on HOST)
    ("cuda>=12.2", True), ("cuda>12.2", False), ("cuda>=12.2.0", True), ("cuda=12.2.0.0", True),
    ("cuda<12.10", True), ("cuda!=12.2", False), ("cuda<=12", False), ("cuda>=12", True),
    ("driver>=535", True), ("driver<535.104.05", False), ("driver=535.104.5", True),
    ("arch>=8.0", True), ("arch<8", False), ("brand=tesla", True), ("brand!=TESLA", False),
    ("BRAND=Tesla", True), ("CUDA>=99", False),
    ("cuda>=99 brand=tesla", True), ("cuda>=99 cuda>=98", False),
    ("cuda>=12,brand=tesla", True), ("cuda>=12,brand=geforce", False),
    ("cuda>=99 brand=tesla,driver>=500", True), ("", True), ("  ", True), (",, ,", True),
    # libnvidia-container's parser, read closely: `!` is a prefix of `!=`; versions are digits
    # and dots with empty components skipped; a brand is any text; an alternative of only
    # commas stops the evaluation with the outcome so far (none yet: it holds).
    ("cuda!12", True), ("cuda!12.2", False), ("brand!tesla", False), ("cuda>=12.", True),
    ("cuda=12..2", True), ("driver=535.104.5.", True), ("brand=Tesla/T4", False),
    (", cuda>=99", True), ("cuda>=99 , brand=tesla", False), ("cuda>=99  brand=tesla", True),
]


@pytest.mark.parametrize(("requirement", "holds"), DSL, ids=[c[0] or "<empty>" for c in DSL])
def test_requirement_dsl(requirement: str, holds: bool) -> None:
    """Space is OR, comma is AND, versions compare numerically, names case-insensitively."""
    if holds:
        check([requirement], [HOST])
    else:
        with pytest.raises(ShimError, match="unsatisfied condition"):
            check([requirement], [HOST])


@pytest.mark.parametrize("requirement", [
    "cuda", "cuda>=", ">=12", "cuda=>12", "cuda==12", "cuda>=12a", "gpu>=1", "brand>=tesla",
    "cuda>=12\tbrand=tesla", "cuda>=.1", "cuda>=.", "cuda<18446744073709551615", "cuda!>1",
    "brand<tesla",
])
def test_invalid_expression(requirement: str) -> None:
    """What libnvidia-container calls an invalid expression fails to parse (a tab is no OR)."""
    with pytest.raises(RequirementError):
        parse_requirement(requirement)


def test_unknown_host_facts_satisfy_their_conditions() -> None:
    """No GPU visible: arch and brand conditions hold, as libnvidia-container assumes."""
    check(["arch>=9.0,brand=geforce"], [GpuFacts(cuda="12.2", driver="535.104.05")])


# --- deliberate differences (README §Where we differ from NVIDIA) -----------------------------

def test_volume_mounts_are_accepted_by_default() -> None:
    """NVIDIA defaults accept-nvidia-visible-devices-as-volume-mounts off; we default it on."""
    result = parsed({"NVIDIA_VISIBLE_DEVICES": "3"}, False, ["0"])
    assert result is not None and result.devices == ("0",) and result.source == "mounts"


@pytest.mark.parametrize("value", ["NONE", "None"])
def test_upper_case_none_means_no_gpu(value: str) -> None:
    """NVIDIA passes NONE on as a device name and fails; we read it as none."""
    result = parsed({"NVIDIA_VISIBLE_DEVICES": value})
    assert result is not None and result.devices == ()


def test_upper_case_void_means_not_a_gpu_container() -> None:
    assert parsed({"NVIDIA_VISIBLE_DEVICES": "VOID"}) is None


def test_none_mount_means_no_gpu() -> None:
    """NVIDIA passes a `none` mount on as a device name and fails; we read it as none."""
    result = parsed({}, False, ["none"])
    assert result is not None and result.devices == ()


def test_malformed_later_alternative_is_an_error() -> None:
    """libnvidia-container stops at the first alternative that holds; we parse them all."""
    with pytest.raises(RequirementError):
        parsed({"NVIDIA_VISIBLE_DEVICES": "0", "NVIDIA_REQUIRE_X": "cuda>=1 bogus"})
