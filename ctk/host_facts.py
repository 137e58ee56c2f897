"""What ``gpu-ctk doctor`` reads about the host, read once and never written: NVML's answers
per GPU, libnvidia-container's, the NVIDIA device nodes and majors, the cgroup mounts and the
engines' configuration files; plus the pure readers of those files.

``Host`` is the I/O edge; ``ctk.doctor_checks`` judges what it holds.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Optional

from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.nvml_lib import Nvml
    from leases.files import Snapshot

RUNTIME_NAME = "gpu-container-runtime"


@dataclass(frozen=True)
class Paths:
    """Where the host-wide files are; tests point them into a temporary directory."""

    docker_config: str = "/etc/docker/daemon.json"
    containerd_config: str = "/etc/containerd/config.toml"
    mountinfo: str = "/proc/self/mountinfo"
    systemd_marker: str = "/run/systemd/system"
    """Exists when systemd is the init system (sd_booted's test)."""


@dataclass(frozen=True)
class NvmlGpu:
    """One GPU as NVML answered for it: ``error`` set when any query failed."""

    index: int
    uuid: str = ""
    minor: Optional[int] = None
    persistence: Optional[bool] = None
    error: str = ""
    code: int = 0


@dataclass(frozen=True)
class NvmlReport:
    """NVML's answers, or why it did not answer (``error``, with NVML's code when it had one)."""

    error: str = ""
    code: int = 0
    driver: str = ""
    cuda: str = ""
    gpus: tuple[NvmlGpu, ...] = ()


@dataclass(frozen=True)
class EngineFile:
    """An engine's configuration file: absent, unreadable (``error``), or parsed."""

    path: str
    exists: bool = False
    error: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    """An NVIDIA character device under the device root."""

    name: str
    """Relative to the device root: ``nvidia0``, ``nvidia-caps/nvidia-cap1``."""
    major: int
    minor: int


class Host:
    """The facts the checks read, each read at most once."""

    def __init__(self, paths: Paths = Paths()) -> None:
        self.paths = paths

    @cached_property
    def config_and_error(self) -> tuple[Config, Optional[ShimError]]:
        from gpu_core import config as config_mod

        try:
            return config_mod.load(), None
        except ShimError as error:
            return config_mod.defaults(), error

    @property
    def config(self) -> Config:
        return self.config_and_error[0]

    @cached_property
    def nvml(self) -> NvmlReport:
        return probe_nvml(self.config.nvml.library)

    @cached_property
    def libnvc(self) -> tuple[str, str, int]:
        """(library version and path, error, GPUs it sees) after load + init + device info."""
        return probe_libnvc(self.config)

    @cached_property
    def majors(self) -> dict[str, int]:
        # Discovery's own reader, so doctor judges nodes by the majors the shim declares.
        from gpu_core.discovery import char_majors

        return char_majors(self.config.host.dev_root, self.config.host.driver_root)

    @cached_property
    def nodes(self) -> list[Node]:
        return nvidia_nodes(self.config.host.dev_root)

    @cached_property
    def mountinfo(self) -> str:
        return read_text(self.paths.mountinfo) or ""

    @cached_property
    def systemd_init(self) -> bool:
        return os.path.isdir(self.paths.systemd_marker)

    @cached_property
    def docker(self) -> EngineFile:
        return read_engine_file(self.paths.docker_config, json_mapping)

    @cached_property
    def containerd(self) -> EngineFile:
        return read_engine_file(self.paths.containerd_config, toml_mapping)

    @cached_property
    def leases(self) -> tuple[Snapshot, dict[str, Optional[str]]]:
        """The lease store and each holder's stale reason (None: live)."""
        from leases import files as lease_files
        from leases import host as lease_host
        from leases.allocation import stale_reason

        snapshot = lease_files.read_all(self.config.mig.lease_dir)
        return snapshot, {lease.container_id: stale_reason(lease, lease_host.HOST)
                          for lease in snapshot.leases}


# --- reading the host ----------------------------------------------------------------------------

def read_text(path: str, limit: int = 1 << 20) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read(limit)
    except OSError:
        return None


def json_mapping(text: str) -> Mapping[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {type(data).__name__}")
    return data


def toml_mapping(text: str) -> Mapping[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.9/3.10 read TOML with tomli when it is installed
        import importlib

        tomllib = importlib.import_module("tomli")
    data: Mapping[str, Any] = tomllib.loads(text)
    return data


def read_engine_file(path: str, parse: Callable[[str], Mapping[str, Any]]) -> EngineFile:
    if not os.path.exists(path):
        return EngineFile(path)
    text = read_text(path)
    if text is None:
        return EngineFile(path, exists=True, error="cannot be read")
    try:
        return EngineFile(path, exists=True, data=parse(text))
    except ImportError:
        return EngineFile(path, exists=True, error="needs Python 3.11 or tomli to be read")
    except ValueError as exc:  # json and toml errors are ValueErrors
        return EngineFile(path, exists=True, error=one_line(str(exc), 200))


def probe_nvml(library: str) -> NvmlReport:
    """Init NVML, then ask each GPU for its UUID, minor and persistence mode on its own, so a lost
    GPU is named while the others still answer; always shut down."""
    import contextlib

    from gpu_core.nvml_lib import NvmlError, open_nvml

    try:
        nvml = open_nvml(library)
        nvml.init()
    except ShimError as error:
        return NvmlReport(error=error.cause, code=12)
    except NvmlError as exc:
        return NvmlReport(error=str(exc), code=exc.value)
    try:
        driver = nvml.driver_version()
        cuda = nvml.cuda_driver_version()
        count = nvml.device_count()
        gpus = tuple(_probe_gpu(nvml, index) for index in range(count))
    except NvmlError as exc:
        return NvmlReport(error=str(exc), code=exc.value)
    finally:
        with contextlib.suppress(NvmlError):
            nvml.shutdown()
    return NvmlReport(driver=driver, cuda=f"{cuda // 1000}.{(cuda % 1000) // 10}", gpus=gpus)


def _probe_gpu(nvml: Nvml, index: int) -> NvmlGpu:
    from gpu_core.nvml_lib import FEATURE_ENABLED, NvmlError

    try:
        handle = nvml.handle_by_index(index)
        uuid = nvml.uuid(handle)
        minor = nvml.minor_number(handle)
        nvml.memory_info(handle)  # a query a lost or fallen-off GPU fails
        mode = nvml.persistence_mode(handle)
    except NvmlError as exc:
        return NvmlGpu(index=index, error=str(exc), code=exc.value)
    return NvmlGpu(index=index, uuid=uuid, minor=minor, persistence=mode == FEATURE_ENABLED)


def probe_libnvc(config: Config) -> tuple[str, str, int]:
    """Load libnvidia-container as the hook does, init it (no kernel modules) and count the
    GPUs it sees: (what loaded, error, GPUs)."""
    import libnvc_bindings

    try:
        library = libnvc_bindings.load(config.libnvidia_container.library)
    except libnvc_bindings.NvcLoadError as error:
        return "", one_line(str(error)), 0
    loaded = f"libnvidia-container {library.version_string} ({library.path})"
    try:
        with libnvc_bindings.Session(library,
                                     root=config.host.driver_root) as session:
            session.init(load_kmods=False)
            return loaded, "", len(session.device_info().gpus)
    except libnvc_bindings.NvcError as error:
        return loaded, one_line(str(error)), 0


def nvidia_nodes(dev_root: str) -> list[Node]:
    """The NVIDIA character devices under ``dev_root`` (and its nvidia-caps directory)."""
    found = []
    for sub in ("", "nvidia-caps"):
        directory = os.path.join(dev_root, sub)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.startswith("nvidia"):
                continue
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISCHR(info.st_mode):
                found.append(Node(os.path.join(sub, name) if sub else name,
                                  os.major(info.st_rdev), os.minor(info.st_rdev)))
    return found


# --- pure helpers --------------------------------------------------------------------------------

def cgroup_layout(mountinfo: str) -> str:
    """``v2`` (unified), ``v1``, ``hybrid`` (v1 controllers plus a v2 mount) or ``none``, from
    the cgroup mounts under /sys/fs/cgroup in a mountinfo text."""
    v1 = v2 = False
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()[:1]
        if len(fields) < 5 or not kind or not fields[4].startswith("/sys/fs/cgroup"):
            continue
        v1 |= kind[0] == "cgroup"
        v2 |= kind[0] == "cgroup2"
    if v1 and v2:
        return "hybrid"
    return "v2" if v2 else ("v1" if v1 else "none")


NODE_DRIVER = (("nvidia-uvm", "nvidia-uvm"), ("nvidia-caps/", "nvidia-caps"),
               ("nvidia", "nvidia-frontend"))
"""Node name prefix -> the /proc/devices driver whose major it must carry (first match)."""


def node_driver(name: str) -> str:
    return next(driver for prefix, driver in NODE_DRIVER if name.startswith(prefix))


def containerd_runtimes(data: Mapping[str, Any]) -> tuple[str, dict[str, Mapping[str, Any]]]:
    """(default runtime name, runtime name -> its table) of the CRI plugin, for config versions
    1 (``cri``), 2 (``io.containerd.grpc.v1.cri``) and 3 (``io.containerd.cri.v1.runtime``)."""
    plugins = data.get("plugins")
    plugins = plugins if isinstance(plugins, dict) else {}
    for key in ("io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri", "cri"):
        cri = plugins.get(key)
        containerd = cri.get("containerd") if isinstance(cri, dict) else None
        if isinstance(containerd, dict):
            runtimes = containerd.get("runtimes")
            runtimes = runtimes if isinstance(runtimes, dict) else {}
            default = str(containerd.get("default_runtime_name", "runc"))
            return default, {k: v for k, v in runtimes.items() if isinstance(v, dict)}
    return "runc", {}


def runtime_options(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """A containerd runtime table's ``options`` (empty when absent or not a table)."""
    options = table.get("options")
    return options if isinstance(options, dict) else {}


def is_ours(path: Any) -> bool:
    return isinstance(path, str) and os.path.basename(path) == RUNTIME_NAME


def containerd_ours(table: Mapping[str, Any]) -> bool:
    """Whether a containerd runtime table runs our shim (``options.BinaryName``)."""
    return is_ours(runtime_options(table).get("BinaryName"))


def docker_runtimes(data: Mapping[str, Any]) -> list[str]:
    """Names of Docker runtimes whose path is our runtime."""
    runtimes = data.get("runtimes")
    runtimes = runtimes if isinstance(runtimes, dict) else {}
    return sorted(name for name, body in runtimes.items()
                  if isinstance(body, dict) and is_ours(body.get("path")))


def docker_cgroup_driver(data: Mapping[str, Any], layout: str, systemd_init: bool) -> str:
    """``systemd`` or ``cgroupfs``: ``native.cgroupdriver`` in exec-opts, else Docker's default
    (systemd on cgroup v2 under systemd, cgroupfs otherwise)."""
    opts = data.get("exec-opts")
    for opt in opts if isinstance(opts, list) else []:
        key, _, value = str(opt).partition("=")
        if key.strip() == "native.cgroupdriver":
            return value.strip()
    return "systemd" if layout == "v2" and systemd_init else "cgroupfs"
