"""Load, validate and default the YAML configuration (README §Configuration).

The file is parsed with ``yaml.safe_load`` only and validated against
``schemas/config.schema.json``; every problem is reported as ``path: message`` in one error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any, Optional

from gpu_core import settings
from gpu_core.errors import ShimError
from gpu_core.private_dirs import OWN_ROOT
from gpu_core.settings import Config as Config  # the typed whole, re-exported for loaders' users
from gpu_core.settings import Policy as Policy

DEFAULT_PATH = "/etc/gpu-container-shim/config.yaml"
ENV_VAR = "GPU_CONTAINER_SHIM_CONFIG"
CACHE_DIR = OWN_ROOT + "/config-cache"
"""Validated configurations keyed by path and confirmed by contents: every runtime call the
engine makes (state, kill, delete …) needs ``runtimes``, and parsing YAML plus compiling the
schema on each would cost more than runc itself. Root-only directory (0700, entries 0600); a
stale or unreadable entry, or one in a directory we do not trust, is just a miss."""
CACHE_FORMAT = 2

# The documented defaults (README §Configuration mirrors this table).
DEFAULTS: dict[str, Any] = {
    "runtimes": ["runc", "crun"],
    "mode": "hook",
    "log": {"file": "/var/log/gpu-container-shim.log", "level": "info"},
    "hook": {"path": "/usr/bin/gpu-container-hook", "args": [], "stage": "prestart",
             "timeout": 30},
    "requests": {"env_unprivileged": True, "volume_mounts": True, "disable_require": False,
                 "swarm_resource": "", "supported_driver_capabilities": "all",
                 "cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]},
    "cgroup": {"parent": "", "move_kubernetes_pods": False},
    "oom": {"inherit": True, "floor": -900},
    "policies": {
        "guaranteed": {"oom_score_adj": -800, "swap_off": True, "numa": True,
                       "blkio_weight": 800},
        "burstable": {"oom_score_adj": 500, "numa": True},
    },
    "policy": {"default": "", "unknown": "error"},
    "nvml": {"library": ""},
    "libnvidia_container": {"library": "", "cli": "", "load_kmods": True,
                            "ldconfig": "@/sbin/ldconfig"},
    "host": {"dev_root": "/dev", "driver_root": "/", "sysfs_root": "/sys"},
    "readiness": {"timeout": 30.0, "interval": 0.25},
    "retry": {"attempts": 5, "deadline": 20.0, "initial_backoff": 0.2, "max_backoff": 4.0},
    "mig": {"lease_dir": "/run/gpu-container-shim/leases", "exclusive_explicit": True},
    "spec": {"hook_path": "/usr/bin/gpu-container-spec-hook", "hook_timeout": 10,
             "ldconfig": "/sbin/ldconfig"},
    "simulation": {},
}


class ConfigError(ShimError):
    """The configuration file is unreadable or invalid; ``problems`` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__("config", f"{source}: " + "; ".join(problems))
        self.problems = problems


def merge(defaults: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` onto ``defaults``; ``policies`` replaces wholesale so an operator
    can drop a shipped policy by omitting it."""
    import copy  # only when the configuration is parsed, not on a start the cache serves

    merged = copy.deepcopy(dict(defaults))
    for key, value in override.items():
        if key != "policies" and isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def schema_problems(document: Any) -> list[str]:
    """Validate ``document`` against the config schema; one ``path: message`` per problem."""
    import jsonschema  # lazily: only paths that read the YAML file pay for it

    import schemas

    validator = jsonschema.Draft7Validator(schemas.load("config.schema.json"))
    problems: list[str] = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - known):
                problems.append(f"{where + '.' if where else ''}{key}: unknown key")
            continue
        problems.append(f"{where or '<root>'}: {error.message}")
    return problems


def parse(text: str, source: str) -> Config:
    """Parse and validate YAML ``text`` read from ``source``."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}{exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [str(exc)]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, [f"<root>: expected a mapping, got {type(document).__name__}"])
    problems = schema_problems(document)
    if problems:
        raise ConfigError(source, problems)
    return from_mapping(document, source)


def from_mapping(override: Mapping[str, Any], source: str) -> Config:
    """The typed configuration of ``override`` merged over DEFAULTS, without the schema (parse
    validates first; tests build configurations this way)."""
    try:
        return settings.build(source, merge(DEFAULTS, override))
    except ValueError as exc:
        raise ConfigError(source, [str(exc)]) from None


def defaults() -> Config:
    """The configuration used when no file exists."""
    return from_mapping({}, "<defaults>")


def config_path(environ: Optional[Mapping[str, str]] = None) -> tuple[str, bool]:
    """Return the path to read and whether it was named explicitly by ``ENV_VAR``."""
    env = os.environ if environ is None else environ
    named = env.get(ENV_VAR, "")
    return (named, True) if named else (DEFAULT_PATH, False)


def content_key(data: bytes) -> str:
    """A short name for file contents. Not a security boundary: every hit is confirmed by
    comparing the stored bytes themselves, so zlib's crc32 serves (hashlib would load OpenSSL,
    milliseconds on every runtime call)."""
    import zlib

    return f"{zlib.crc32(data):08x}{len(data):x}"


def cache_file(path: str, cache_dir: str) -> str:
    return os.path.join(cache_dir, content_key(path.encode("utf-8", "surrogateescape")) + ".json")


def read_entry(path: str) -> Optional[bytes]:
    """A cache entry's bytes when it is a regular file of ours that nobody else can write;
    never through a symlink (README §Security and fault hardening)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or \
                info.st_mode & 0o022:
            return None
        return stream.read()


def cached(path: str, data: bytes, cache_dir: str) -> Optional[Config]:
    """The validated config stored for ``path`` when it was made from exactly ``data``, from a
    cache directory we trust (gpu_core.private_dirs): anyone else's entry could name any runtime."""
    import json

    from gpu_core import private_dirs

    if not private_dirs.trusted(cache_dir):
        return None
    stored = read_entry(cache_file(path, cache_dir))
    if stored is None:
        return None
    try:
        entry = json.loads(stored)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or \
            entry.get("source") != path or \
            entry.get("text") != data.decode("utf-8", "surrogateescape"):
        return None
    try:
        return settings.build(path, entry.get("raw"))
    except ValueError:  # not what this version builds from: validate the file again
        return None


def store(config: Config, data: bytes, cache_dir: str) -> None:
    """Remember a validated config; failing to is harmless (the next call validates again). A
    cache directory someone else made or left writable is moved aside and made again, 0700."""
    import json

    from gpu_core import atomic_file, private_dirs

    if os.geteuid() != 0:
        return
    try:
        moved = private_dirs.ensure(cache_dir, 0o700, own_root=OWN_ROOT)
        if moved:
            from gpu_core import logfile

            logfile.note_untrusted(config.log.file, moved)
        entry = json.dumps({"format": CACHE_FORMAT, "source": config.source,
                            "text": data.decode("utf-8", "surrogateescape"),
                            "raw": config.document})
        atomic_file.write(cache_file(config.source, cache_dir), entry.encode("utf-8"), 0o600)
    except OSError:
        pass


def load(environ: Optional[Mapping[str, str]] = None, cache_dir: str = CACHE_DIR) -> Config:
    """Read the configuration: the named file must exist; the default one may be absent."""
    path, named = config_path(environ)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        if named:
            raise ConfigError(path, ["file not found"]) from None
        return defaults()
    except OSError as exc:
        raise ConfigError(path, [exc.strerror or str(exc)]) from None
    hit = cached(path, data, cache_dir) if cache_dir else None
    if hit is not None:
        return hit
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8: {exc.reason} at byte {exc.start}"]) from None
    config = parse(text, path)
    if cache_dir:
        store(config, data, cache_dir)
    return config
