"""Device requests read from config.json exactly as the NVIDIA toolkit's hook reads them."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_core.config import Config, defaults, parse
from gpu_core.errors import ShimError
from gpu_core.request import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DeviceRequest,
    device_token_kind,
    parse_request,
)
from gpu_core.requirements import RequirementError

ADMIN = ["CAP_CHOWN", "CAP_SYS_ADMIN"]
UUID = "GPU-b8ea3855-276c-c9cb-b366-c6fa655957c5"
MIG_UUID = "MIG-0f6b2b6e-1c39-5d8e-9c1f-2a3b4c5d6e7f"


def spec(*env: str, bounding: Optional[list[str]] = None,
         mounts: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """A minimal config.json with the given environment, bounding set and mounts."""
    process: dict[str, Any] = {"env": list(env), "args": ["sh"], "cwd": "/"}
    if bounding is not None:
        process["capabilities"] = {"bounding": bounding}
    document: dict[str, Any] = {"ociVersion": "1.2.0", "process": process,
                                "root": {"path": "rootfs"}}
    if mounts is not None:
        document["mounts"] = mounts
    return document


def device_mount(name: str, source: str = "/dev/null") -> dict[str, Any]:
    return {"source": source, "destination": f"/var/run/nvidia-container-devices/{name}",
            "type": "bind", "options": ["bind", "ro"]}


def config(text: str = "") -> Config:
    return parse(text, "test") if text else defaults()


def request(*env: str, **kwargs: Any) -> Optional[DeviceRequest]:
    cfg = kwargs.pop("cfg", None) or defaults()
    return parse_request(spec(*env, **kwargs), cfg)


def error(*env: str, **kwargs: Any) -> ShimError:
    with pytest.raises(ShimError) as info:
        request(*env, **kwargs)
    return info.value


# --- NVIDIA_VISIBLE_DEVICES -------------------------------------------------------------------

DEVICE_LISTS = [
    # (description, value, expected devices or None for "not a GPU container")
    ("single index", "0", ("0",)),
    ("indices in order", "1,0,3", ("1", "0", "3")),
    ("items trimmed", " 0 , 1 ", ("0", "1")),
    ("empty items skipped", "0,,1,", ("0", "1")),
    ("all", "all", ("all",)),
    ("all is case-insensitive", "ALL", ("all",)),
    ("all beats tokens", "0,all", ("all",)),
    ("none", "none", ()),
    ("the first special word wins: all", "all,none", ("all",)),
    ("the first special word wins: none", "none,all", ()),
    ("a special word drops the other tokens unread", "all,bogus", ("all",)),
    ("void", "void", None),
    ("void beats everything", "0,none,void", None),
    ("empty", "", None),
    ("only commas and spaces", " , ,", None),
    ("gpu uuid", UUID, (UUID,)),
    ("gpu uuid lower-case prefix", UUID.lower(), (UUID.lower(),)),
    ("pci bus id", "0000:07:00.0", ("0000:07:00.0",)),
    ("long-domain pci bus id", "00000000:07:00.0", ("00000000:07:00.0",)),
    ("mig uuid", MIG_UUID, (MIG_UUID,)),
    ("legacy mig uuid", f"MIG-{UUID}/1/0", (f"MIG-{UUID}/1/0",)),
    ("mig indices", "0:1,1:0", ("0:1", "1:0")),
    ("mig by profile", "mig-1g.10gb", ("mig-1g.10gb",)),
    ("mig profile with media extension", "mig-1g.10gb+me", ("mig-1g.10gb+me",)),
    ("mig profile on an index", "0.mig-3g.40gb", ("0.mig-3g.40gb",)),
    ("mig profile on a uuid", f"{UUID}.mig-7g.80gb", (f"{UUID}.mig-7g.80gb",)),
    ("duplicates kept as given", "0,0", ("0", "0")),
]


@pytest.mark.parametrize(("description", "value", "expected"), DEVICE_LISTS,
                         ids=[c[0] for c in DEVICE_LISTS])
def test_visible_devices_select_tokens(description: str, value: str,
                                       expected: Optional[tuple[str, ...]]) -> None:
    """NVIDIA_VISIBLE_DEVICES yields the trimmed tokens, a special value or no request."""
    result = request(f"NVIDIA_VISIBLE_DEVICES={value}")
    assert (None if result is None else result.devices) == expected


def test_unset_visible_devices_is_not_a_gpu_container() -> None:
    """Without NVIDIA_VISIBLE_DEVICES (and no legacy CUDA image) there is no request."""
    assert request("PATH=/bin") is None


LEGACY = [
    # (description, env, expected devices or None)
    ("legacy image gets all", ["CUDA_VERSION=9.0.176"], ("all",)),
    ("require cuda makes it modern", ["CUDA_VERSION=12.2", "NVIDIA_REQUIRE_CUDA=cuda>=12.2"],
     None),
    ("empty cuda version is not legacy", ["CUDA_VERSION="], None),
    ("empty require cuda keeps it legacy", ["CUDA_VERSION=9.0", "NVIDIA_REQUIRE_CUDA="],
     ("all",)),
    ("set-but-empty devices wins over legacy", ["CUDA_VERSION=9.0", "NVIDIA_VISIBLE_DEVICES="],
     None),
    ("explicit devices win over legacy", ["CUDA_VERSION=9.0", "NVIDIA_VISIBLE_DEVICES=1"],
     ("1",)),
]


@pytest.mark.parametrize(("description", "env", "expected"), LEGACY, ids=[c[0] for c in LEGACY])
def test_legacy_cuda_image_rule(description: str, env: list[str],
                                expected: Optional[tuple[str, ...]]) -> None:
    """An image with CUDA_VERSION and no NVIDIA_REQUIRE_CUDA asks for all GPUs when unset."""
    result = request(*env)
    assert (None if result is None else result.devices) == expected


BAD_TOKENS = [
    "gpu0", "GPU-", "GPU-xyz", "MIG-", "-1", "0x1", "1.5", "0:", ":1", "0000:07:00", "cdi/x",
    "mig-1g", "mig-10gb", "0.mig-", "mig-1g.10gb+", "MIG-GPU-abc/1",
    "\u0661",  # an Arabic-Indic digit one: not an index even though str.isdigit() says so
    "m\u0131g-1g.10gb",  # a dotless i: case-insensitive matching must stay ASCII-only
]


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_impossible_token_is_an_unknown_device(token: str) -> None:
    """A token of no known shape is rejected with `unknown device <token>`."""
    exc = error(f"NVIDIA_VISIBLE_DEVICES=0,{token}")
    assert exc.stage == "request"
    assert exc.cause.startswith(f"unknown device {token}; expected an index")


def test_unknown_device_message_escapes_control_characters() -> None:
    """A token with terminal escapes or newlines is echoed escaped, on one line."""
    exc = error("NVIDIA_VISIBLE_DEVICES=a\x1b[31m\nb")
    assert "\x1b" not in str(exc) and "\n" not in str(exc)
    assert "a\\x1b[31m" in exc.cause


def test_overlong_token_is_rejected_with_a_bounded_echo() -> None:
    """A token over 256 characters is an error whose message stays short."""
    exc = error("NVIDIA_VISIBLE_DEVICES=" + "9" * 5000)
    assert exc.stage == "request" and "longer than 256" in exc.cause
    assert len(str(exc)) < 300


def test_too_many_tokens_are_rejected() -> None:
    """More than 1024 device tokens is an error."""
    exc = error("NVIDIA_VISIBLE_DEVICES=" + ",".join(["0"] * 1025))
    assert exc.cause == "NVIDIA_VISIBLE_DEVICES: more than 1024 items"


def test_1024_tokens_are_accepted() -> None:
    """The bound is inclusive: 1024 tokens still parse."""
    result = request("NVIDIA_VISIBLE_DEVICES=" + ",".join(["0"] * 1024))
    assert result is not None and len(result.devices) == 1024


def test_void_does_not_validate_other_tokens() -> None:
    """A void request is not a GPU container, so its other tokens are never judged."""
    assert request("NVIDIA_VISIBLE_DEVICES=void,bogus!") is None


TOKEN_KINDS = [
    ("3", "index"), (UUID, "gpu-uuid"), ("0000:3b:00.0", "pci-bus-id"),
    (MIG_UUID, "mig-uuid"), (f"MIG-{UUID}/7/0", "mig-uuid"), ("2:3", "mig-index"),
    ("mig-2g.20gb", "mig-profile"), ("1.mig-1g.12gb+me.all", "gpu-mig-profile"),
    (f"{UUID.lower()}.mig-3g.40gb", "gpu-mig-profile"), ("nope", None), ("", None),
]


@pytest.mark.parametrize(("token", "kind"), TOKEN_KINDS)
def test_device_token_kind_names_the_shape(token: str, kind: Optional[str]) -> None:
    """Each accepted shape has a name the selection step can dispatch on."""
    assert device_token_kind(token) == kind


# --- environment details ----------------------------------------------------------------------

def test_later_duplicate_env_entry_wins() -> None:
    """As with execve, the last NVIDIA_VISIBLE_DEVICES entry is the one that counts."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=1")
    assert result is not None and result.devices == ("1",)


def test_env_entry_without_equals_is_refused() -> None:
    """The toolkit's hook fails on an entry without '=' (runc would refuse it too)."""
    exc = error("NVIDIA_VISIBLE_DEVICES=2", "NVIDIA_VISIBLE_DEVICES")
    assert exc.cause == "process.env[1]: expected NAME=VALUE, got NVIDIA_VISIBLE_DEVICES"


def test_more_than_32_requirements_are_refused() -> None:
    """libnvidia-container takes 32 --require options; blank ones and the legacy rule count."""
    blanks = [f"NVIDIA_REQUIRE_B{i}=" for i in range(31)]
    assert request("NVIDIA_VISIBLE_DEVICES=0", "CUDA_VERSION=9.0", *blanks) is not None
    exc = error("NVIDIA_VISIBLE_DEVICES=0", "CUDA_VERSION=9.0", "NVIDIA_REQUIRE_X=", *blanks)
    assert exc.cause.startswith("too many requirements: 33")


def test_many_requirements_are_not_counted_when_disabled() -> None:
    many = [f"NVIDIA_REQUIRE_B{i}=cuda>=1" for i in range(40)]
    assert request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DISABLE_REQUIRE=1", *many) is not None


def test_value_may_contain_equals() -> None:
    """Only the first '=' separates name from value."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_X=driver>=450")
    assert result is not None and result.requirements == ("driver>=450",)


# --- capabilities -----------------------------------------------------------------------------

CAPABILITY_CASES = [
    ("unset is utility and compute", None, DEFAULT_CAPABILITIES),
    ("empty is utility and compute", "", DEFAULT_CAPABILITIES),
    ("blank items only is no capability", " , ", frozenset()),
    ("one capability", "video", frozenset({"video"})),
    ("list trimmed", "compute, utility ,graphics", frozenset({"compute", "utility",
                                                               "graphics"})),
    ("all expands", "all", CAPABILITIES),
    ("all among others expands", "compute,all", CAPABILITIES),
]


@pytest.mark.parametrize(("description", "value", "expected"), CAPABILITY_CASES,
                         ids=[c[0] for c in CAPABILITY_CASES])
def test_driver_capabilities(description: str, value: Optional[str],
                             expected: frozenset[str]) -> None:
    """NVIDIA_DRIVER_CAPABILITIES is read as a comma list with a default and `all`."""
    env = ["NVIDIA_VISIBLE_DEVICES=0"]
    if value is not None:
        env.append(f"NVIDIA_DRIVER_CAPABILITIES={value}")
    result = request(*env)
    assert result is not None and result.capabilities == expected


def test_all_capabilities_are_the_seven_documented() -> None:
    """`all` means exactly the documented capability names."""
    documented = {"compute", "compat32", "graphics", "utility", "video", "display", "ngx"}
    assert documented == CAPABILITIES


def test_unknown_capability_is_named() -> None:
    """An unknown capability is an error that names it."""
    exc = error("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DRIVER_CAPABILITIES=compute,telepathy")
    assert exc.stage == "request"
    assert exc.cause.startswith("NVIDIA_DRIVER_CAPABILITIES: unsupported capability telepathy ")


def test_capabilities_of_a_non_gpu_container_are_not_judged() -> None:
    """A container without a device request is not failed for its capability variable."""
    assert request("NVIDIA_DRIVER_CAPABILITIES=bogus") is None


# --- requirements -----------------------------------------------------------------------------

def test_requirements_collected_sorted_by_variable_name() -> None:
    """Every NVIDIA_REQUIRE_* value is kept, ordered by variable name for determinism."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_Z=brand=tesla",
                     "NVIDIA_REQUIRE_CUDA=cuda>=12.0", "NVIDIA_REQUIRE_ARCH=arch>=8.0")
    assert result is not None
    assert result.requirements == ("arch>=8.0", "cuda>=12.0", "brand=tesla")


def test_empty_requirement_values_are_skipped() -> None:
    """A blank NVIDIA_REQUIRE_* variable asks for nothing."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_X= ")
    assert result is not None and result.requirements == ()


def test_jetpack_requirement_is_not_a_dsl_requirement() -> None:
    """NVIDIA_REQUIRE_JETPACK is left out, as the toolkit does."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_JETPACK=csv-mounts=all")
    assert result is not None and result.requirements == ()


def test_malformed_requirement_fails_early() -> None:
    """A requirement that does not parse is reported at request time with its stage."""
    with pytest.raises(RequirementError) as info:
        request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>>12")
    assert info.value.stage == "requirements"


def test_malformed_requirement_is_ignored_when_disabled() -> None:
    """With requirements disabled, a malformed one does not fail the container."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>>12",
                     "NVIDIA_DISABLE_REQUIRE=true")
    assert result is not None and result.disable_require
    assert result.checked_requirements == ()


DISABLE_VALUES = [
    ("true", True), ("TRUE", True), ("True", True), ("1", True), ("t", True), ("T", True),
    ("false", False), ("False", False), ("0", False), ("f", False), ("", False),
    ("yes", False), ("Yes", False), ("tRUE", False), (" true", False), ("maybe", False),
]


@pytest.mark.parametrize(("value", "expected"), DISABLE_VALUES)
def test_disable_require_booleans(value: str, expected: bool) -> None:
    """NVIDIA_DISABLE_REQUIRE is read as Go's strconv.ParseBool, anything else false."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", f"NVIDIA_DISABLE_REQUIRE={value}")
    assert result is not None and result.disable_require is expected


def test_non_boolean_disable_require_keeps_the_checks() -> None:
    """An NVIDIA_DISABLE_REQUIRE that is not a Go boolean leaves requirements checked."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DISABLE_REQUIRE=maybe",
                     "NVIDIA_REQUIRE_CUDA=cuda>=12")
    assert result is not None and result.checked_requirements == ("cuda>=12",)


def test_config_disables_requirements() -> None:
    """requests.disable_require in the configuration turns checks off for every container."""
    cfg = config("requests: {disable_require: true}")
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=99", cfg=cfg)
    assert result is not None and result.disable_require
    assert result.requirements == ()


def test_checked_requirements_are_the_requirements_when_enabled() -> None:
    """Without a disable switch every collected requirement is to be checked."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_REQUIRE_CUDA=cuda>=12")
    assert result is not None and result.checked_requirements == ("cuda>=12",)


# --- privilege, MIG config/monitor ------------------------------------------------------------

PRIVILEGE = [
    ("no capabilities", None, False),
    ("bounding without sys_admin", ["CAP_CHOWN"], False),
    ("bounding with sys_admin", ADMIN, True),
    ("empty bounding", [], False),
]


@pytest.mark.parametrize(("description", "bounding", "expected"), PRIVILEGE,
                         ids=[c[0] for c in PRIVILEGE])
def test_privileged_means_sys_admin_in_bounding(description: str,
                                                bounding: Optional[list[str]],
                                                expected: bool) -> None:
    """A container is privileged exactly when CAP_SYS_ADMIN is in its bounding set."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", bounding=bounding)
    assert result is not None and result.privileged is expected


def test_sys_admin_only_in_effective_is_not_privileged() -> None:
    """Only the bounding set counts; other sets never grant privilege."""
    document = spec("NVIDIA_VISIBLE_DEVICES=0")
    document["process"]["capabilities"] = {"effective": ADMIN, "bounding": ["CAP_CHOWN"]}
    result = parse_request(document, defaults())
    assert result is not None and not result.privileged


@pytest.mark.parametrize("name", ["NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"])
def test_mig_control_in_privileged_container_is_recorded(name: str) -> None:
    """A privileged container's MIG config/monitor request `all` is recorded."""
    result = request("NVIDIA_VISIBLE_DEVICES=all", f"{name}=all", bounding=ADMIN)
    assert result is not None
    field = "mig_config" if "CONFIG" in name else "mig_monitor"
    assert getattr(result, field) == ("all",)


@pytest.mark.parametrize("name", ["NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"])
def test_mig_control_in_unprivileged_container_is_refused(name: str) -> None:
    """As in the NVIDIA hook, asking for MIG control without CAP_SYS_ADMIN is an error."""
    exc = error("NVIDIA_VISIBLE_DEVICES=all", f"{name}=all", bounding=["CAP_CHOWN"])
    assert exc.cause == f"cannot set {name} in an unprivileged container (needs CAP_SYS_ADMIN)"


def test_empty_mig_control_is_nothing() -> None:
    """An empty MIG config variable asks for nothing, even when unprivileged."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_MIG_CONFIG_DEVICES=")
    assert result is not None and result.mig_config == () and result.mig_monitor == ()


def test_mig_control_other_than_all_is_refused() -> None:
    """libnvidia-container supports only `all` for MIG config/monitor."""
    exc = error("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_MIG_MONITOR_DEVICES=0", bounding=ADMIN)
    assert exc.cause == ("NVIDIA_MIG_MONITOR_DEVICES: 0: only 'all' devices are currently "
                         "supported")


@pytest.mark.parametrize("value", [",", " ", "all "])
def test_any_non_empty_mig_control_in_unprivileged_container_is_refused(value: str) -> None:
    """The toolkit's hook tests the raw value: commas or spaces are still a request."""
    exc = error("NVIDIA_VISIBLE_DEVICES=0", f"NVIDIA_MIG_CONFIG_DEVICES={value}")
    assert exc.cause.startswith("cannot set NVIDIA_MIG_CONFIG_DEVICES")


@pytest.mark.parametrize(("value", "expected"), [
    ("ALL", ("all",)), (",,all", ("all",)), ("all,bogus", ("all",)), (",", ()),
])
def test_mig_control_reads_up_to_the_first_item(value: str, expected: tuple[str, ...]) -> None:
    """libnvidia-container skips empty items and reads nothing after `all` (any case)."""
    result = request("NVIDIA_VISIBLE_DEVICES=all", f"NVIDIA_MIG_MONITOR_DEVICES={value}",
                     bounding=ADMIN)
    assert result is not None and result.mig_monitor == expected


@pytest.mark.parametrize("value", [" all", "all ", "bogus,all"])
def test_mig_control_items_are_not_trimmed(value: str) -> None:
    """libnvidia-container compares each item untrimmed: ` all` is not `all`."""
    exc = error("NVIDIA_VISIBLE_DEVICES=all", f"NVIDIA_MIG_CONFIG_DEVICES={value}",
                bounding=ADMIN)
    assert exc.cause.endswith("only 'all' devices are currently supported")


def test_mig_control_without_devices_is_not_judged() -> None:
    """A non-GPU container is never failed for its MIG variables."""
    assert request("NVIDIA_MIG_CONFIG_DEVICES=all") is None


# --- env from unprivileged containers, volume-mount lists -------------------------------------

NO_UNPRIVILEGED_ENV = "requests: {env_unprivileged: false}"


def test_unprivileged_env_request_ignored_when_config_says_so() -> None:
    """With env_unprivileged off, an unprivileged container's env request is no request."""
    assert request("NVIDIA_VISIBLE_DEVICES=all", cfg=config(NO_UNPRIVILEGED_ENV)) is None


def test_privileged_env_request_honoured_when_unprivileged_env_is_off() -> None:
    """A privileged container's env request counts whatever env_unprivileged says."""
    result = request("NVIDIA_VISIBLE_DEVICES=0", bounding=ADMIN,
                     cfg=config(NO_UNPRIVILEGED_ENV))
    assert result is not None and result.devices == ("0",) and result.source == "env"


def test_ignored_env_request_is_not_validated() -> None:
    """An env request that is ignored cannot fail the container."""
    assert request("NVIDIA_VISIBLE_DEVICES=bogus!", cfg=config(NO_UNPRIVILEGED_ENV)) is None


def test_ignored_legacy_request_is_not_a_gpu_container() -> None:
    """The legacy-image `all` is an env request too, and is ignored the same way."""
    assert request("CUDA_VERSION=9.0", cfg=config(NO_UNPRIVILEGED_ENV)) is None


def test_mount_list_is_read() -> None:
    """/dev/null mounts under the device-list root name the devices, in mount order."""
    result = request(mounts=[device_mount("1"), device_mount(UUID)])
    assert result is not None and result.devices == ("1", UUID) and result.source == "mounts"


def test_mount_list_beats_env() -> None:
    """When the mount list is present it takes precedence over NVIDIA_VISIBLE_DEVICES."""
    result = request("NVIDIA_VISIBLE_DEVICES=all", mounts=[device_mount("3")])
    assert result is not None and result.devices == ("3",) and result.source == "mounts"


def test_mount_list_counts_for_unprivileged_when_env_is_off() -> None:
    """Operators who turn env requests off use mount lists; those are honoured."""
    result = request("NVIDIA_VISIBLE_DEVICES=all", mounts=[device_mount("0")],
                     cfg=config(NO_UNPRIVILEGED_ENV))
    assert result is not None and result.devices == ("0",)


def test_mount_list_ignored_when_config_disables_it() -> None:
    """With volume_mounts off, the mounts are not a request and the env is read instead."""
    result = request("NVIDIA_VISIBLE_DEVICES=2", mounts=[device_mount("3")],
                     cfg=config("requests: {volume_mounts: false}"))
    assert result is not None and result.devices == ("2",) and result.source == "env"


def test_mount_all_means_all() -> None:
    """A mount named `all` asks for every GPU."""
    result = request(mounts=[device_mount("0"), device_mount("all")])
    assert result is not None and result.wants_all


def test_mount_beside_the_root_sharing_its_prefix_is_a_request() -> None:
    """The toolkit tests the root as a plain prefix: ``…devices0`` asks for GPU 0."""
    result = request(mounts=[{"source": "/dev/null",
                              "destination": "/var/run/nvidia-container-devices0"}])
    assert result is not None and result.devices == ("0",)


def test_comma_in_a_mount_name_separates_devices() -> None:
    """A mount name reaches libnvidia-container's --device list as it is, so `0,1` is two."""
    result = request(mounts=[device_mount("0,,1")])
    assert result is not None and result.devices == ("0", "1")


MOUNTS_IGNORED = [
    ("source not /dev/null", {"source": "/dev/zero",
                              "destination": "/var/run/nvidia-container-devices/0"}),
    ("no source", {"destination": "/var/run/nvidia-container-devices/0"}),
    ("outside the root", {"source": "/dev/null", "destination": "/run/nvidia-container-devices/0"}),
    ("the root itself",
     {"source": "/dev/null", "destination": "/var/run/nvidia-container-devices"}),
    ("dot-dot out of the root",
     {"source": "/dev/null", "destination": "/var/run/nvidia-container-devices/../x/0"}),
    ("imex channel", {"source": "/dev/null",
                      "destination": "/var/run/nvidia-container-devices/imex/0"}),
]


@pytest.mark.parametrize(("description", "mount"), MOUNTS_IGNORED,
                         ids=[c[0] for c in MOUNTS_IGNORED])
def test_mounts_that_are_not_device_requests(description: str, mount: dict[str, Any]) -> None:
    """Mounts that are not /dev/null under the device-list root request nothing."""
    assert request(mounts=[mount]) is None


def test_mount_paths_are_cleaned() -> None:
    """Sources and destinations are compared after lexical cleaning, as filepath.Clean does."""
    mount = {"source": "//dev/./null", "destination": "/var/run//nvidia-container-devices/0/"}
    result = request(mounts=[mount])
    assert result is not None and result.devices == ("0",)


def test_duplicate_mount_destinations_count_once() -> None:
    """The same destination twice is one request."""
    result = request(mounts=[device_mount("0"), device_mount("0"), device_mount("1")])
    assert result is not None and result.devices == ("0", "1")


def test_bad_mount_token_is_an_unknown_device() -> None:
    """A mount-list name of impossible shape is rejected like an env token."""
    exc = error(mounts=[device_mount("gpu0")])
    assert exc.cause.startswith("unknown device gpu0;")


def test_non_matching_mounts_fall_back_to_env() -> None:
    """Mounts that request nothing leave the env request in force."""
    result = request("NVIDIA_VISIBLE_DEVICES=1", mounts=[{"source": "/tmp", "destination": "/x"}])
    assert result is not None and result.devices == ("1",) and result.source == "env"


# --- malformed spec parts ---------------------------------------------------------------------

MALFORMED = [
    ("spec not an object", [], "<root>: expected an object, got list"),
    ("process not an object", {"process": "sh"}, "process: expected an object, got str"),
    ("env not a list", {"process": {"env": "A=1"}}, "process.env: expected a list, got str"),
    ("env entry not a string", {"process": {"env": ["A=1", 7]}},
     "process.env[1]: expected a string, got int"),
    ("capabilities not an object", {"process": {"capabilities": ["CAP_SYS_ADMIN"]}},
     "process.capabilities: expected an object, got list"),
    ("bounding not a list", {"process": {"capabilities": {"bounding": "CAP_SYS_ADMIN"}}},
     "process.capabilities.bounding: expected a list, got str"),
    ("bounding entry not a string", {"process": {"capabilities": {"bounding": [None]}}},
     "process.capabilities.bounding[0]: expected a string, got NoneType"),
    ("mounts not a list", {"process": {}, "mounts": {}}, "mounts: expected a list, got dict"),
    ("mount not an object", {"process": {}, "mounts": ["/dev/null"]},
     "mounts[0]: expected an object, got str"),
    ("mount destination missing", {"process": {}, "mounts": [{"source": "/dev/null"}]},
     "mounts[0].destination: expected a string"),
    ("mount source not a string", {"process": {}, "mounts": [{"source": 1, "destination": "/"}]},
     "mounts[0].source: expected a string"),
]


@pytest.mark.parametrize(("description", "document", "cause"), MALFORMED,
                         ids=[c[0] for c in MALFORMED])
def test_malformed_spec_parts_are_config_json_errors(description: str, document: Any,
                                                     cause: str) -> None:
    """A spec part of the wrong type is a `config.json: <field>: ...` error."""
    with pytest.raises(ShimError) as info:
        parse_request(document, defaults())
    assert (info.value.stage, info.value.cause) == ("config.json", cause)


def test_missing_process_is_not_a_gpu_container() -> None:
    """A spec without a process has no environment and so no env request."""
    assert parse_request({"ociVersion": "1.2.0"}, defaults()) is None


def test_parse_does_not_mutate_the_spec() -> None:
    """Parsing is pure: the spec is left exactly as it was."""
    import copy

    document = spec("NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_DRIVER_CAPABILITIES=all",
                    bounding=ADMIN, mounts=[device_mount("1")])
    before = copy.deepcopy(document)
    parse_request(document, defaults())
    assert document == before


# --- properties -------------------------------------------------------------------------------

ENV_NAMES = st.sampled_from([
    "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
    "NVIDIA_REQUIRE_ARCH", "NVIDIA_DISABLE_REQUIRE", "NVIDIA_MIG_CONFIG_DEVICES",
    "NVIDIA_MIG_MONITOR_DEVICES", "CUDA_VERSION", "PATH",
])
ENV_VALUES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["0", "all", "none", "void", UUID, "mig-1g.10gb", "0:1", " ", "",
                              "cuda>=12", "brand=tesla", "true", "compute", "x!"]),
             max_size=5).map(",".join),
)
ENVS = st.lists(st.tuples(ENV_NAMES, ENV_VALUES).map("=".join) | st.text(max_size=20),
                max_size=8)
MOUNTS = st.lists(st.fixed_dictionaries({
    "source": st.sampled_from(["/dev/null", "/dev/zero", "//dev/null"]),
    "destination": st.sampled_from(["/var/run/nvidia-container-devices/", "/x/"]).flatmap(
        lambda root: st.text(max_size=12).map(lambda name: root + name)),
}), max_size=3)


@settings(max_examples=300, deadline=None)
@given(env=ENVS, bounding=st.booleans(), mounts=MOUNTS)
def test_parse_raises_only_shim_errors(env: list[str], bounding: bool,
                                       mounts: list[dict[str, Any]]) -> None:
    """Whatever the image's environment and mounts, parsing returns or raises ShimError."""
    document = spec(*env, bounding=ADMIN if bounding else None, mounts=mounts)
    try:
        result = parse_request(document, defaults())
    except ShimError as exc:
        assert "\n" not in str(exc)
    else:
        assert result is None or isinstance(result, DeviceRequest)


@settings(max_examples=150, deadline=None)
@given(env=ENVS, mounts=MOUNTS)
def test_parse_is_deterministic(env: list[str], mounts: list[dict[str, Any]]) -> None:
    """Parsing the same spec twice gives the same result or the same error."""
    def outcome() -> object:
        try:
            return parse_request(spec(*env, mounts=mounts), defaults())
        except ShimError as exc:
            return str(exc)

    assert outcome() == outcome()
