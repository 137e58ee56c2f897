"""The configuration as typed values: one immutable record per section of
``schemas/config.schema.json``, built once from the validated document with every default filled
in (gpu_core.config loads, validates and caches it; README §Configuration lists the keys).

Code reads ``config.mig.lease_dir`` or ``config.retry.attempts``, never a string key: a mistyped
name fails under mypy, and each value already has its type. ``build`` checks every value it
reads, so a cached document that does not fit (an entry an older version wrote, say) is refused
rather than trusted.

The records are ``typing.NamedTuple``s, not frozen dataclasses: every shim and hook start
defines them, and ``dataclass(frozen=True)`` generates six methods per class with ``exec``
(sixteen such classes cost more than the rest of the configuration module); a NamedTuple is as
immutable and as typed for mypy. For the same reason this module does not use ``from __future__
import annotations``: NamedTuple would compile each string annotation at import.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Optional


class LogSettings(NamedTuple):
    """``log``: our own log file (empty disables it) and its level."""

    file: str
    level: str


class HookSettings(NamedTuple):
    """``hook``: the OCI hook entry the shim injects; empty ``args`` means [basename(path)]."""

    path: str
    args: tuple[str, ...]
    stage: str
    timeout: int


class RequestSettings(NamedTuple):
    """``requests``: which ways of asking for GPUs a container may use."""

    env_unprivileged: bool
    volume_mounts: bool
    disable_require: bool
    swarm_resource: str
    supported_driver_capabilities: str
    cdi_spec_dirs: tuple[str, ...]


class CgroupSettings(NamedTuple):
    """``cgroup``: a parent for every container, and whether Kubernetes pods move too."""

    parent: str
    move_kubernetes_pods: bool


class OomSettings(NamedTuple):
    """``oom``: inherit the shim's own score, never below ``floor``."""

    inherit: bool
    floor: int


class Policy(NamedTuple):
    """One named workload policy (``policies.<name>``): the edits a container choosing it
    receives."""

    name: str
    oom_score_adj: Optional[int] = None
    cgroup_parent: Optional[str] = None
    numa: bool = False
    swap_off: bool = False
    blkio_weight: Optional[int] = None


class PolicySettings(NamedTuple):
    """``policy``: the policy a GPU container gets unasked, and what an unknown name does."""

    default: str
    unknown: str


class NvmlSettings(NamedTuple):
    """``nvml``: the NVML library to load; empty means the system's."""

    library: str


class LibnvcSettings(NamedTuple):
    """``libnvidia_container``: the library, the CLI fallback, and how they run."""

    library: str
    cli: str
    load_kmods: bool
    ldconfig: str


class HostSettings(NamedTuple):
    """``host``: where the host's device nodes, driver files and sysfs are."""

    dev_root: str
    driver_root: str
    sysfs_root: str


class ReadinessSettings(NamedTuple):
    """``readiness``: how long the hook waits for devices, and how often it looks."""

    timeout: float
    interval: float


class RetrySettings(NamedTuple):
    """``retry``: the hook's retries of transient libnvidia-container failures."""

    attempts: int
    deadline: float
    initial_backoff: float
    max_backoff: float


class MigSettings(NamedTuple):
    """``mig``: where MIG leases live, and whether explicitly named instances are leased."""

    lease_dir: str
    exclusive_explicit: bool


class SpecSettings(NamedTuple):
    """``spec``: the lean ld-cache hook spec mode registers (README §Spec mode)."""

    hook_path: str
    hook_timeout: int
    ldconfig: str


class SimulationSettings(NamedTuple):
    """``simulation``: set by ``gpu-ctk simulate`` only; an empty ``dir`` is a real host."""

    dir: str = ""
    topology: str = ""


class Config(NamedTuple):
    """The validated configuration with every default filled in."""

    source: str
    runtimes: tuple[str, ...]
    mode: str
    """``hook`` (our libnvidia-container hook mounts the driver) or ``spec`` (the shim declares
    the driver's files as mounts in config.json); only the configuration chooses it."""
    log: LogSettings
    hook: HookSettings
    requests: RequestSettings
    cgroup: CgroupSettings
    oom: OomSettings
    policies: Mapping[str, Policy]
    policy: PolicySettings
    nvml: NvmlSettings
    libnvidia_container: LibnvcSettings
    host: HostSettings
    readiness: ReadinessSettings
    retry: RetrySettings
    mig: MigSettings
    spec: SpecSettings
    simulation: SimulationSettings
    document: Mapping[str, Any]
    """The mapping these values were built from: what the config cache stores."""


class Section:
    """Typed reads of one mapping of the document; any misfit is a ValueError naming the key."""

    def __init__(self, document: Any, name: str, label: str = "") -> None:
        self.name = label or name
        value = document.get(name) if isinstance(document, Mapping) else None
        if not isinstance(value, Mapping):
            raise ValueError(f"{self.name}: expected a mapping")
        self.body: Mapping[str, Any] = value

    def get(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        if key not in self.body:
            raise ValueError(f"{self.name}.{key}: missing")
        value = self.body[key]
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            raise ValueError(f"{self.name}.{key}: expected {what}")
        return value

    def text(self, key: str) -> str:
        value: str = self.get(key, (str,), "a string")
        return value

    def flag(self, key: str) -> bool:
        value: bool = self.get(key, (bool,), "a boolean")
        return value

    def number(self, key: str) -> float:
        return float(self.get(key, (int, float), "a number"))

    def integer(self, key: str) -> int:
        # JSON Schema's "integer" admits 30.0 as it admits 30.
        value = self.get(key, (int, float), "an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{self.name}.{key}: expected an integer")
        return int(value)

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list, tuple), "a list")
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"{self.name}.{key}: expected a list of strings")
        return tuple(value)

    def optional_text(self, key: str) -> Optional[str]:
        return self.text(key) if key in self.body else None

    def optional_integer(self, key: str) -> Optional[int]:
        return self.integer(key) if key in self.body else None

    def flag_or(self, key: str, default: bool) -> bool:
        """For the keys DEFAULTS leaves out (a policy's, the simulation's)."""
        return self.flag(key) if key in self.body else default

    def text_or(self, key: str, default: str) -> str:
        return self.text(key) if key in self.body else default


def policy(name: str, section: Section) -> Policy:
    return Policy(name=name, oom_score_adj=section.optional_integer("oom_score_adj"),
                  cgroup_parent=section.optional_text("cgroup_parent"),
                  numa=section.flag_or("numa", False), swap_off=section.flag_or("swap_off", False),
                  blkio_weight=section.optional_integer("blkio_weight"))


def build(source: str, document: Any) -> Config:
    """The typed configuration of a validated, defaulted ``document`` (gpu_core.config.merge
    over DEFAULTS); ValueError names the first value that does not fit."""
    runtimes = _runtimes(document)  # first: it also checks that the document is a mapping
    log, hook = Section(document, "log"), Section(document, "hook")
    requests, cgroup = Section(document, "requests"), Section(document, "cgroup")
    oom, choice = Section(document, "oom"), Section(document, "policy")
    libnvc, host = Section(document, "libnvidia_container"), Section(document, "host")
    readiness, retry = Section(document, "readiness"), Section(document, "retry")
    mig, simulation = Section(document, "mig"), Section(document, "simulation")
    policies, spec = Section(document, "policies"), Section(document, "spec")
    return Config(
        source=source, runtimes=runtimes, mode=_mode(document),
        log=LogSettings(file=log.text("file"), level=log.text("level")),
        hook=HookSettings(path=hook.text("path"), args=hook.texts("args"),
                          stage=hook.text("stage"), timeout=hook.integer("timeout")),
        requests=RequestSettings(
            env_unprivileged=requests.flag("env_unprivileged"),
            volume_mounts=requests.flag("volume_mounts"),
            disable_require=requests.flag("disable_require"),
            swarm_resource=requests.text("swarm_resource"),
            supported_driver_capabilities=requests.text("supported_driver_capabilities"),
            cdi_spec_dirs=requests.texts("cdi_spec_dirs")),
        cgroup=CgroupSettings(parent=cgroup.text("parent"),
                              move_kubernetes_pods=cgroup.flag("move_kubernetes_pods")),
        oom=OomSettings(inherit=oom.flag("inherit"), floor=oom.integer("floor")),
        policies=MappingProxyType({
            name: policy(str(name), Section(policies.body, name, f"policies.{name}"))
            for name in policies.body}),
        policy=PolicySettings(default=choice.text("default"), unknown=choice.text("unknown")),
        nvml=NvmlSettings(library=Section(document, "nvml").text("library")),
        libnvidia_container=LibnvcSettings(
            library=libnvc.text("library"), cli=libnvc.text("cli"),
            load_kmods=libnvc.flag("load_kmods"), ldconfig=libnvc.text("ldconfig")),
        host=HostSettings(dev_root=host.text("dev_root"), driver_root=host.text("driver_root"),
                          sysfs_root=host.text("sysfs_root")),
        readiness=ReadinessSettings(timeout=readiness.number("timeout"),
                                    interval=readiness.number("interval")),
        retry=RetrySettings(attempts=retry.integer("attempts"), deadline=retry.number("deadline"),
                            initial_backoff=retry.number("initial_backoff"),
                            max_backoff=retry.number("max_backoff")),
        mig=MigSettings(lease_dir=mig.text("lease_dir"),
                        exclusive_explicit=mig.flag("exclusive_explicit")),
        spec=SpecSettings(hook_path=spec.text("hook_path"),
                          hook_timeout=spec.integer("hook_timeout"),
                          ldconfig=spec.text("ldconfig")),
        simulation=SimulationSettings(
            dir=simulation.text_or("dir", ""), topology=simulation.text_or("topology", "")),
        document=document)


MODES = ("hook", "spec")


def _mode(document: Mapping[str, Any]) -> str:
    value = document.get("mode")
    if value not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}")
    return str(value)


def _runtimes(document: Any) -> tuple[str, ...]:
    value = document.get("runtimes") if isinstance(document, Mapping) else None
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(item, str) and item for item in value):
        raise ValueError("runtimes: expected a non-empty list of names")
    return tuple(value)
