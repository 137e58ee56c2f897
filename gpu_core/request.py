"""The device request model: what a container asked for (README §Device requests).

``parse_request(spec, config)`` is pure apart from reading CDI specs when a CDI device name is
requested; both the shim and the hook call it, so they agree. The semantics follow the NVIDIA
Container Toolkit's hook (``internal/config/image``, ``cmd/nvidia-container-runtime-hook``) and
libnvidia-container; README §Where we differ from NVIDIA lists each deliberate difference.
Word-level rules live in ``gpu_core.request_words``; token *shapes* are checked here, whether a
device exists is for selection against the inventory.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional

from gpu_core.config import Config
from gpu_core.errors import ShimError
from gpu_core.request_mounts import (
    DEVICE_LIST_ROOT,
    IMEX_MOUNT_PREFIX,
    device_list_mounts,
    mount_tokens,
)
from gpu_core.request_words import (
    CAP_SYS_ADMIN,
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MAX_TOKENS,
    device_token_kind,
    driver_capabilities,
    legacy_cuda_version,
    mig_control,
    parse_bool,
    pick_devices,
    split_list,
    supported_capabilities,
)
from gpu_core.request_words import shown as _shown
from gpu_core.requirements import parse_requirement
from gpu_core.settings import RequestSettings

__all__ = ["CAPABILITIES", "DEFAULT_CAPABILITIES", "DEVICE_LIST_ROOT", "DeviceRequest",
           "device_token_kind", "mount_tokens", "parse_request", "split_list"]

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

MAX_REQUIREMENTS = 32
"""libnvidia-container's CLI holds at most 32 ``--require`` options; more fail the start."""

IMEX_CHANNELS = "NVIDIA_IMEX_CHANNELS"


class DeviceRequest(NamedTuple):
    """A GPU container's request; ``parse_request`` returns None for a non-GPU container."""

    devices: tuple[str, ...]
    """Device tokens in request order, trimmed, CDI names resolved; ``("all",)`` for all GPUs
    (and, on a MIG host, every MIG device); ``()`` for ``none``."""
    capabilities: frozenset[str]
    """Driver capabilities with ``all`` expanded (``compute``, ``utility`` …)."""
    requirements: tuple[str, ...] = ()
    """Every requirement, each ANDed: the ``NVIDIA_REQUIRE_*`` values by variable name, then
    the legacy image's ``cuda>=<major.minor>``."""
    disable_require: bool = False
    mig_config: tuple[str, ...] = ()
    """``NVIDIA_MIG_CONFIG_DEVICES`` tokens (honoured for privileged containers only)."""
    mig_monitor: tuple[str, ...] = ()
    """``NVIDIA_MIG_MONITOR_DEVICES`` tokens (honoured for privileged containers only)."""
    source: str = "env"
    """Where the device list came from: ``env``, ``mounts``, ``swarm`` or ``legacy``."""
    privileged: bool = False
    origin: tuple[str, ...] = ()
    """The variables (or the mount root) the device list was read from."""
    cdi: tuple[tuple[str, str], ...] = ()
    """``(CDI name, device token)`` for each CDI device name the request used."""
    capabilities_source: str = "default"
    """``env``, ``default`` (unset or empty) or ``legacy`` (unset on a legacy CUDA image)."""
    requirement_sources: tuple[str, ...] = ()
    """For each of ``requirements``: the variable it came from, or ``legacy:CUDA_VERSION``."""
    imex_channels: tuple[str, ...] = ()
    """IMEX channel numbers asked for (``NVIDIA_IMEX_CHANNELS`` or ``imex/<n>`` mounts)."""
    imex_source: str = ""
    """``env`` or ``mounts``; ``""`` when no channel is asked for."""

    @property
    def wants_all(self) -> bool:
        return self.devices == ("all",)

    @property
    def checked_requirements(self) -> tuple[str, ...]:
        """The requirements to check: none when disabled by the image or the configuration."""
        return () if self.disable_require else self.requirements


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
    """``process.env`` as a dict: later duplicates win (as execve and runc see it). An entry
    without ``=`` is an error, as in the toolkit's hook (and runc refuses to start it)."""
    env: dict[str, str] = {}
    for i, entry in enumerate(_strings(process.get("env"), "process.env")):
        key, sep, value = entry.partition("=")
        if not sep:
            raise ShimError(SPEC_STAGE, f"process.env[{i}]: expected NAME=VALUE, got "
                                        f"{_shown(entry, 40)}")
        if key:
            env[key] = value
    return env


def is_privileged(process: Mapping[str, Any]) -> bool:
    """CAP_SYS_ADMIN in the bounding set, as the toolkit decides it."""
    caps = _mapping(process.get("capabilities"), "process.capabilities")
    return CAP_SYS_ADMIN in _strings(caps.get("bounding"), "process.capabilities.bounding")


def _env_tokens(env: Mapping[str, str], swarm: Sequence[str]) -> tuple[list[str], str,
                                                                        tuple[str, ...]]:
    """The device tokens the environment asks for, where from (``env``, ``swarm``, ``legacy``)
    and which variables: the set swarm-resource variables when any is set (concatenated),
    else ``NVIDIA_VISIBLE_DEVICES``; unset on a legacy CUDA image means ``all``."""
    names = tuple(name for name in swarm if name in env)
    source = "swarm" if names else "env"
    names = names or (VISIBLE_DEVICES,)
    if not any(name in env for name in names):
        return (["all"], "legacy", (CUDA_VERSION,)) if _legacy(env) else ([], source, names)
    tokens = [token for name in names if name in env for token in split_list(env[name], name)]
    if len(tokens) > MAX_TOKENS:
        raise ShimError(STAGE, f"{'+'.join(names)}: more than {MAX_TOKENS} items")
    return tokens, source, names


def _legacy(env: Mapping[str, str]) -> bool:
    """A legacy CUDA image: ``CUDA_VERSION`` set and ``NVIDIA_REQUIRE_CUDA`` empty or unset."""
    return env.get(CUDA_VERSION, "") != "" and env.get(REQUIRE_CUDA, "") == ""


def _requirements(env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The requirements and the variable each came from; the legacy rule last. Blank ones
    constrain nothing and are left out, but count towards libnvidia-container's limit (the
    toolkit's hook passes each as a ``--require``)."""
    every = [name for name in env if name.startswith(REQUIRE_PREFIX)
             and not name.startswith(REQUIRE_JETPACK)]
    count = len(every) + (1 if _legacy(env) else 0)
    if count > MAX_REQUIREMENTS:
        raise ShimError(STAGE, f"too many requirements: {count} NVIDIA_REQUIRE_* (with the "
                               f"legacy rule); libnvidia-container takes at most "
                               f"{MAX_REQUIREMENTS}")
    names = sorted(name for name in every if env[name].strip())
    texts, sources = [env[name] for name in names], list(names)
    if _legacy(env):
        texts.append(f"cuda>={legacy_cuda_version(env[CUDA_VERSION])}")
        sources.append(f"legacy:{CUDA_VERSION}")
    return tuple(texts), tuple(sources)


def _imex_channels(mounted: list[str], env: Mapping[str, str], volume_mounts: bool,
                   env_allowed: bool) -> tuple[tuple[str, ...], str]:
    """IMEX channels as the toolkit reads them: ``imex/<n>`` mounts first, else the variable
    (``all``, ``none``, ``void`` and empty ask for none; needs the env to be accepted)."""
    channels: list[str] = []
    source = ""
    if volume_mounts:
        channels = [t[len(IMEX_MOUNT_PREFIX):] for t in mounted
                    if t.startswith(IMEX_MOUNT_PREFIX)]
        source = "mounts"
    if not channels and env_allowed:
        items = split_list(env.get(IMEX_CHANNELS, ""), IMEX_CHANNELS)
        # Lower case only, as the toolkit's words are (``ALL`` is then no channel number).
        channels = [] if set(items) & {"all", "none", "void"} else items
        source = "env"
    for channel in channels:
        if not (channel.isascii() and channel.isdigit() and len(channel) <= 9):
            raise ShimError(STAGE, f"IMEX channel {_shown(channel)}: expected a channel number")
    return tuple(channels), source if channels else ""


def _resolve_cdi(tokens: list[str], options: RequestSettings
                 ) -> tuple[list[str], tuple[tuple[str, str], ...]]:
    """Swap CDI names for the device tokens they stand for; the CDI module (and YAML) load only
    when a token is a CDI name."""
    if not any("=" in token for token in tokens):
        return tokens, ()
    from gpu_core.cdi_names import is_cdi_name, resolve

    dirs = list(options.cdi_spec_dirs)
    names = [token for token in tokens if is_cdi_name(token)]
    resolved = dict(resolve(names, dirs))
    return [resolved.get(token, token) for token in tokens], tuple(resolved.items())


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
    options = config.requests
    volume_mounts = options.volume_mounts
    env_allowed = privileged or options.env_unprivileged

    mounted = device_list_mounts(spec) if volume_mounts else []
    tokens = mount_tokens(mounted)
    source = "mounts"
    origin: tuple[str, ...] = (DEVICE_LIST_ROOT,)
    if not tokens:
        swarm = split_list(options.swarm_resource, "requests.swarm_resource")
        tokens, source, origin = _env_tokens(env, swarm)
        if tokens and not env_allowed:
            return None
    words = {token.lower() for token in tokens}
    if "void" in words:
        return None  # before CDI names are looked up: void wins wherever it is
    cdi: tuple[tuple[str, str], ...] = ()
    if not words & {"all", "none"}:  # else the first of them wins and the rest goes unread
        tokens, cdi = _resolve_cdi(tokens, options)
    devices = pick_devices(tokens, in_order=source == "mounts")
    if devices is None:
        return None

    mig_config = mig_control(env.get(MIG_CONFIG_DEVICES, ""), MIG_CONFIG_DEVICES, privileged)
    mig_monitor = mig_control(env.get(MIG_MONITOR_DEVICES, ""), MIG_MONITOR_DEVICES, privileged)
    supported = supported_capabilities(options.supported_driver_capabilities)
    capabilities, caps_source = driver_capabilities(env.get(DRIVER_CAPABILITIES), _legacy(env),
                                                    supported)
    disable_require = parse_bool(env.get(DISABLE_REQUIRE)) or options.disable_require
    requirements: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    if not disable_require:
        requirements, sources = _requirements(env)
        for text in requirements:
            parse_requirement(text)
    channels, imex_source = _imex_channels(mounted, env, volume_mounts, env_allowed)
    return DeviceRequest(devices=devices, capabilities=capabilities, requirements=requirements,
                         disable_require=disable_require, mig_config=mig_config,
                         mig_monitor=mig_monitor, source=source, privileged=privileged,
                         origin=origin, cdi=cdi, capabilities_source=caps_source,
                         requirement_sources=sources, imex_channels=channels,
                         imex_source=imex_source)
