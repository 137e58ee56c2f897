"""The device request model: what a container asked for (design.md §Device requests).

``parse_request(spec, config)`` is pure; both the shim and the hook call it, so they agree.
The semantics follow the NVIDIA Container Toolkit's hook (``internal/config/image``): a
``/dev/null`` volume-mount list beats the environment; an environment request from an
unprivileged container counts only when the configuration accepts it; ``void`` beats ``none``
beats ``all`` anywhere in the list. Token *shapes* are checked here; whether a device exists is
for selection against the inventory.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hook.config import Config
from hook.errors import ShimError, one_line
from hook.requirements import parse_requirement

STAGE = "request"
SPEC_STAGE = "config.json"

VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
DRIVER_CAPABILITIES = "NVIDIA_DRIVER_CAPABILITIES"
REQUIRE_PREFIX = "NVIDIA_REQUIRE_"
REQUIRE_JETPACK = "NVIDIA_REQUIRE_JETPACK"
"""Not a DSL requirement (Jetson CSV mounts); the toolkit leaves it out, so do we."""
DISABLE_REQUIRE = "NVIDIA_DISABLE_REQUIRE"
MIG_CONFIG_DEVICES = "NVIDIA_MIG_CONFIG_DEVICES"
MIG_MONITOR_DEVICES = "NVIDIA_MIG_MONITOR_DEVICES"
CUDA_VERSION = "CUDA_VERSION"
REQUIRE_CUDA = "NVIDIA_REQUIRE_CUDA"

DEVICE_LIST_ROOT = "/var/run/nvidia-container-devices"
IMEX_MOUNT_PREFIX = "imex/"
"""IMEX channel requests share the mount root; they are not GPUs and are not handled here."""
CAP_SYS_ADMIN = "CAP_SYS_ADMIN"

CAPABILITIES = frozenset({"compute", "compat32", "graphics", "utility", "video", "display",
                          "ngx"})
DEFAULT_CAPABILITIES = frozenset({"utility", "compute"})

MAX_TOKEN_CHARS = 256
MAX_TOKENS = 1024

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

_HEX_ID = r"[0-9a-f]+(?:-[0-9a-f]+)*"
_INDEX = r"[0-9]{1,9}"
_PROFILE = r"[0-9]{1,2}g\.[0-9]{1,4}gb(?:\+[a-z][a-z0-9]*(?:\.[a-z0-9]+)*)*"
_TOKEN_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE | re.ASCII)) for kind, pattern in (
        ("index", _INDEX),
        ("gpu-uuid", rf"GPU-{_HEX_ID}"),
        ("pci-bus-id", r"[0-9a-f]{1,8}:[0-9a-f]{1,2}:[0-9a-f]{1,2}\.[0-7]"),
        ("mig-uuid", rf"MIG-{_HEX_ID}|MIG-GPU-{_HEX_ID}/{_INDEX}/{_INDEX}"),
        ("mig-index", rf"{_INDEX}:{_INDEX}"),
        ("mig-profile", rf"mig-{_PROFILE}"),
        ("gpu-mig-profile", rf"(?:{_INDEX}|GPU-{_HEX_ID})\.mig-{_PROFILE}"),
    )
)
_TOKEN_FORMS = ("an index, GPU-<uuid>, a PCI bus id, MIG-<uuid>, <gpu>:<mig>, mig-<profile> "
                "or <gpu>.mig-<profile>")


@dataclass(frozen=True)
class DeviceRequest:
    """A GPU container's request; ``parse_request`` returns None for a non-GPU container."""

    devices: tuple[str, ...]
    """Device tokens in request order, trimmed; ``("all",)`` for all GPUs; ``()`` for ``none``."""
    capabilities: frozenset[str]
    """Driver capabilities with ``all`` expanded (``compute``, ``utility`` …)."""
    requirements: tuple[str, ...] = ()
    """The values of every ``NVIDIA_REQUIRE_*`` variable, each ANDed."""
    disable_require: bool = False
    mig_config: tuple[str, ...] = ()
    """``NVIDIA_MIG_CONFIG_DEVICES`` tokens (honoured for privileged containers only)."""
    mig_monitor: tuple[str, ...] = ()
    """``NVIDIA_MIG_MONITOR_DEVICES`` tokens (honoured for privileged containers only)."""
    source: str = "env"
    """Where the device list came from: ``env`` or ``mounts``."""
    privileged: bool = False

    @property
    def wants_all(self) -> bool:
        return self.devices == ("all",)

    @property
    def checked_requirements(self) -> tuple[str, ...]:
        """The requirements to check: none when disabled by the image or the configuration."""
        return () if self.disable_require else self.requirements


def _shown(value: str, limit: int = 80) -> str:
    """An untrusted value, escaped and bounded, safe to put in a one-line message."""
    return one_line(repr(value)[1:-1], limit)


def device_token_kind(token: str) -> Optional[str]:
    """Name the shape of a device token (``index``, ``gpu-uuid``, ``pci-bus-id``, ``mig-uuid``,
    ``mig-index``, ``mig-profile``, ``gpu-mig-profile``), or None for an impossible one."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    for kind, pattern in _TOKEN_KINDS:
        if pattern.fullmatch(token):
            return kind
    return None


def split_list(value: str, name: str) -> list[str]:
    """Split a comma list as the toolkit does (trim, skip empty items), bounded because the
    value comes from the image."""
    items = [item.strip() for item in value.split(",")]
    items = [item for item in items if item]
    if len(items) > MAX_TOKENS:
        raise ShimError(STAGE, f"{name}: more than {MAX_TOKENS} items")
    for item in items:
        if len(item) > MAX_TOKEN_CHARS:
            raise ShimError(STAGE, f"{name}: item longer than {MAX_TOKEN_CHARS} characters: "
                                   f"{_shown(item)}")
    return items


def _select(tokens: Sequence[str]) -> Optional[tuple[str, ...]]:
    """Apply the special values (``void`` > ``none`` > ``all``, case-insensitive) and check the
    shape of every other token; None means not a GPU container."""
    lowered = {token.lower() for token in tokens}
    if not tokens or "void" in lowered:
        return None
    for token in tokens:
        if token.lower() not in ("none", "all") and device_token_kind(token) is None:
            raise ShimError(STAGE, f"unknown device {_shown(token)}; expected {_TOKEN_FORMS}")
    if "none" in lowered:
        return ()
    if "all" in lowered:
        return ("all",)
    return tuple(tokens)


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ShimError(SPEC_STAGE, f"{field}: expected an object, got {type(value).__name__}")
    return value


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ShimError(SPEC_STAGE, f"{field}: expected a list, got {type(value).__name__}")
    if all(type(item) is str for item in value):  # the common case, without a copy
        return value
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ShimError(SPEC_STAGE, f"{field}[{i}]: expected a string, got "
                                        f"{type(item).__name__}")
    return [str(item) for item in value]  # str subclasses only


def environment(process: Mapping[str, Any]) -> dict[str, str]:
    """``process.env`` as a dict: later duplicates win (as execve and runc see it), entries
    without ``=`` are ignored."""
    env: dict[str, str] = {}
    for entry in _strings(process.get("env"), "process.env"):
        key, sep, value = entry.partition("=")
        if sep and key:
            env[key] = value
    return env


def is_privileged(process: Mapping[str, Any]) -> bool:
    """CAP_SYS_ADMIN in the bounding set, as the toolkit decides it."""
    caps = _mapping(process.get("capabilities"), "process.capabilities")
    return CAP_SYS_ADMIN in _strings(caps.get("bounding"), "process.capabilities.bounding")


def _clean(path: str) -> str:
    """Lexical cleaning like Go's filepath.Clean (normpath keeps a leading ``//``)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def mount_tokens(spec: Mapping[str, Any]) -> list[str]:
    """Device tokens requested as ``/dev/null`` mounts under the device-list root, in mount
    order, each destination counted once."""
    mounts = spec.get("mounts")
    if mounts is None:
        return []
    if not isinstance(mounts, list):
        raise ShimError(SPEC_STAGE, f"mounts: expected a list, got {type(mounts).__name__}")
    seen: set[str] = set()
    tokens: list[str] = []
    for i, mount in enumerate(mounts):
        # type() before isinstance(): an ABC check per mount dominates a 5 000-mount spec.
        if type(mount) is not dict and not isinstance(mount, Mapping):
            raise ShimError(SPEC_STAGE, f"mounts[{i}]: expected an object, got "
                                        f"{type(mount).__name__}")
        source, destination = mount.get("source"), mount.get("destination")
        if source is not None and type(source) is not str and not isinstance(source, str):
            raise ShimError(SPEC_STAGE, f"mounts[{i}].source: expected a string")
        if type(destination) is not str and not isinstance(destination, str):
            raise ShimError(SPEC_STAGE, f"mounts[{i}].destination: expected a string")
        # Cleaning never adds characters: a source without "null" cannot clean to /dev/null, and
        # skipping the cleaning keeps a 5 000-mount spec cheap.
        if source is None or "null" not in source or _clean(source) != "/dev/null":
            continue
        destination = _clean(destination)
        if destination in seen or not destination.startswith(DEVICE_LIST_ROOT + "/"):
            continue
        seen.add(destination)
        token = destination[len(DEVICE_LIST_ROOT):].strip("/")
        if token.startswith(IMEX_MOUNT_PREFIX):
            continue
        if len(token) > MAX_TOKEN_CHARS:
            raise ShimError(STAGE, f"device-list mount: item longer than {MAX_TOKEN_CHARS} "
                                   f"characters: {_shown(token)}")
        tokens.append(token)
        if len(tokens) > MAX_TOKENS:
            raise ShimError(STAGE, f"device-list mounts: more than {MAX_TOKENS} items")
    return tokens


def _env_tokens(env: Mapping[str, str]) -> list[str]:
    value = env.get(VISIBLE_DEVICES)
    if value is None:
        legacy = env.get(CUDA_VERSION, "") != "" and env.get(REQUIRE_CUDA, "") == ""
        return ["all"] if legacy else []
    return split_list(value, VISIBLE_DEVICES)


def _capabilities(env: Mapping[str, str]) -> frozenset[str]:
    names = split_list(env.get(DRIVER_CAPABILITIES, ""), DRIVER_CAPABILITIES)
    if not names:
        return DEFAULT_CAPABILITIES
    for name in names:
        if name != "all" and name not in CAPABILITIES:
            raise ShimError(STAGE, f"{DRIVER_CAPABILITIES}: unknown capability {_shown(name)}; "
                                   f"expected {', '.join(sorted(CAPABILITIES))} or all")
    return CAPABILITIES if "all" in names else frozenset(names)


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise ShimError(STAGE, f"{name}: expected true or false, got {_shown(env[name])}")


def _mig_devices(env: Mapping[str, str], name: str, privileged: bool) -> tuple[str, ...]:
    """The toolkit refuses these in unprivileged containers rather than ignoring them, and
    libnvidia-container accepts only ``all``."""
    items = split_list(env.get(name, ""), name)
    if not items:
        return ()
    if not privileged:
        raise ShimError(STAGE, f"cannot set {name} in an unprivileged container "
                               f"(needs {CAP_SYS_ADMIN})")
    for item in items:
        if item.lower() != "all":
            raise ShimError(STAGE, f"{name}: only 'all' is supported, got {_shown(item)}")
    return ("all",)


def _requirements(env: Mapping[str, str]) -> tuple[str, ...]:
    names = sorted(name for name in env if name.startswith(REQUIRE_PREFIX))
    return tuple(env[name] for name in names
                 if not name.startswith(REQUIRE_JETPACK) and env[name].strip())


def parse_request(spec: Mapping[str, Any], config: Config) -> Optional[DeviceRequest]:
    """Read the device request from a parsed config.json; None for a non-GPU container.

    Raises ShimError ``config.json: <field>: ...`` for a malformed spec part, ``request: ...``
    for a bad request and ``requirements: ...`` for a malformed requirement (unless disabled).
    """
    if not isinstance(spec, Mapping):
        raise ShimError(SPEC_STAGE, f"<root>: expected an object, got {type(spec).__name__}")
    process = _mapping(spec.get("process"), "process")
    env = environment(process)
    privileged = is_privileged(process)
    options = config.section("requests")

    source = "mounts"
    tokens = mount_tokens(spec) if options.get("volume_mounts", True) else []
    if not tokens:
        source = "env"
        tokens = _env_tokens(env)
        if tokens and not privileged and not options.get("env_unprivileged", True):
            return None
    devices = _select(tokens)
    if devices is None:
        return None

    mig_config = _mig_devices(env, MIG_CONFIG_DEVICES, privileged)
    mig_monitor = _mig_devices(env, MIG_MONITOR_DEVICES, privileged)
    capabilities = _capabilities(env)
    requirements = _requirements(env)
    image_disables = _bool(env, DISABLE_REQUIRE)
    disable_require = image_disables or bool(options.get("disable_require", False))
    if not disable_require:
        for text in requirements:
            parse_requirement(text)
    return DeviceRequest(devices=devices, capabilities=capabilities, requirements=requirements,
                         disable_require=disable_require, mig_config=mig_config,
                         mig_monitor=mig_monitor, source=source, privileged=privileged)
