"""What every modifier may read besides the spec: configuration, the parsed device request,
facts about the shim's own process, and what several modifiers share, each computed once on
demand: GPU discovery, the selection, the workload policy."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from gpu_core.config import Config
from gpu_core.request import DeviceRequest
from runtime_shim.cpuset import Available  # imported for real: see HostFacts.available

if TYPE_CHECKING:
    from gpu_core.driver_scan import HostDriver
    from gpu_core.inventory import Inventory
    from gpu_core.selection import Selection
    from leases.allocation import Lease
    from leases.interface import LeaseStore
    from runtime_shim.cdi_injection import Injection
    from runtime_shim.policy_choice import PolicyChoice

Spec = dict[str, Any]
"""A parsed config.json; unknown fields are kept as they were read."""

Notes = list[str]
"""Human-readable lines saying what a modifier changed; they go to our log."""


class HostFacts(NamedTuple):
    """Facts about the calling process that decide clamps and cgroup path forms."""

    oom_score_adj: int = 0
    cap_sys_resource: bool = True
    systemd_cgroup: bool = False
    io_weight: bool = True
    """Whether the low-level runtime can set a block-IO weight here (runtime_shim.io_weight)."""
    # A real type, not a quoted one: NamedTuple would compile a string annotation, and the
    # first compile() of a process costs milliseconds (it builds the ast module's types).
    available: Optional[Callable[[Optional[str]], Available]] = None
    """The CPUs and memory nodes a container with this ``linux.cgroupsPath`` can get
    (runtime_shim.cpuset, read on demand); None: nothing known limits them."""


class Context:
    """Inputs shared by all modifiers of one create. ``inventory``, ``selection`` and
    ``policy`` compute their value on the first modifier that asks and keep it; ``lease_store``
    makes the MIG lease store at most once.

    Mutable on purpose, in two fields only, both written by the MIG-lease modifier (first in the
    pipeline) when it takes a lease: ``request`` becomes one naming the leased MIG UUIDs instead
    of profile tokens, so every later modifier sees the devices the container actually got
    (``selection`` follows it: a selection is kept for the request it was made from), and
    ``lease`` records the lease taken, so the shim knows to give it back when the create fails.
    No other modifier writes them.

    A plain class with ``__slots__``, not a dataclass: it is made on every GPU create, and
    importing dataclasses (with inspect) and generating its methods would cost that start more
    than everything this module does (README §Layout)."""

    __slots__ = (
        "_driver",
        "_inventory",
        "_policy",
        "_selection",
        "bundle",
        "config",
        "container_id",
        "discover",
        "host",
        "injected",
        "lease",
        "leases",
        "request",
        "runtime_root",
    )

    config: Config
    request: Optional[DeviceRequest]
    container_id: str
    runtime_root: str
    """The low-level runtime's state root for this call (``--root`` or its default); a MIG
    lease records it to tell later whether the runtime still knows the container."""
    bundle: str
    host: HostFacts
    discover: "Optional[Callable[[], Inventory]]"
    leases: "Optional[LeaseStore]"
    """Where MIG leases are taken (leases.interface); None: the node's real store, made on
    first use. ``gpu-ctk plan`` sets a dry-run store (leases.dry_run)."""
    lease: "Optional[Lease]"
    """The MIG lease this create took (or, with a dry-run store, would take); None: none."""
    injected: "Optional[Injection]"
    """NVIDIA devices or driver files the engine already injected from a CDI spec
    (runtime_shim.cdi_injection); then no modifier adds devices, a lease or our hook."""
    _inventory: "Optional[Inventory]"
    _selection: "Optional[tuple[DeviceRequest, Selection]]"
    _policy: "Optional[PolicyChoice]"
    _driver: "Optional[HostDriver]"

    def __init__(self, config: Config, request: Optional[DeviceRequest], container_id: str = "",
                 runtime_root: str = "", bundle: str = "", host: Optional[HostFacts] = None,
                 discover: "Optional[Callable[[], Inventory]]" = None,
                 leases: "Optional[LeaseStore]" = None, lease: "Optional[Lease]" = None,
                 injected: "Optional[Injection]" = None) -> None:
        self.config = config
        self.request = request
        self.container_id = container_id
        self.runtime_root = runtime_root
        self.bundle = bundle
        self.host = HostFacts() if host is None else host
        self.discover = discover
        self.leases = leases
        self.lease = lease
        self.injected = injected
        self._inventory = None
        self._selection = None
        self._policy = None
        self._driver = None

    @property
    def gpu(self) -> bool:
        """Whether this is a GPU container: it asks for GPUs, or the engine gave it GPU nodes
        (an annotation alone never makes one: README §Beside CDI and DRA)."""
        return self.request is not None or (self.injected is not None
                                            and self.injected.gpus_present)

    def inventory(self) -> "Inventory":
        """Discover the host's GPUs once, on the first modifier that needs them."""
        if self._inventory is None:
            if self.discover is None:
                from gpu_core.discovery import discover_from_config

                self._inventory = discover_from_config(self.config)
            else:
                self._inventory = self.discover()
        return self._inventory

    def host_driver(self) -> "HostDriver":
        """The host driver's files (gpu_core.driver_scan) for the version discovery read, scanned
        once: spec mode declares them as mounts."""
        if self._driver is None:
            from gpu_core.driver_scan import scan

            self._driver = scan(self.config.host.driver_root, self.inventory().driver_version)
        return self._driver

    def lease_store(self) -> "LeaseStore":
        """The MIG lease store: ``leases`` when set, else the real one under ``mig.lease_dir``
        (test fault points honoured only against a simulated host: leases.faults)."""
        if self.leases is None:
            from leases.store import FileStore

            self.leases = FileStore(self.lease_dir(),
                                    faults=bool(self.config.simulation.dir))
        return self.leases

    def lease_dir(self) -> str:
        """The node's MIG lease directory (``mig.lease_dir``)."""
        return self.config.mig.lease_dir

    def selection(self, request: DeviceRequest) -> "Selection":
        """``request``'s devices on this host (gpu_core.selection.select), selected once per
        request: the devices and NUMA modifiers share one, made from the request the MIG-lease
        modifier left (``request`` is ``ctx.request``, narrowed to not None by the caller)."""
        if self._selection is None or self._selection[0] is not request:
            from gpu_core.selection import select

            self._selection = (request, select(request, self.inventory()))
        return self._selection[1]

    def policy(self, spec: Spec) -> "PolicyChoice":
        """The container's workload policy, chosen once (runtime_shim.policy_choice) from the
        annotations and env of ``spec``, which no modifier edits; an unknown name under
        ``policy.unknown: fail`` raises for every asker, so the first one stops the create."""
        if self._policy is None:
            from runtime_shim import policy_choice

            self._policy = policy_choice.choose(spec, self.config, gpu=self.gpu)
        return self._policy
