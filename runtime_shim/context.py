"""What every modifier may read besides the spec: configuration, the parsed device request,
facts about the shim's own process, and GPU discovery on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from gpu_core.config import Config
from gpu_core.request import DeviceRequest

if TYPE_CHECKING:
    from gpu_core.inventory import Inventory
    from runtime_shim.cpuset import Available

Spec = dict[str, Any]
"""A parsed config.json; unknown fields are kept as they were read."""

Notes = list[str]
"""Human-readable lines saying what a modifier changed; they go to our log."""


@dataclass(frozen=True)
class HostFacts:
    """Facts about the calling process that decide clamps and cgroup path forms."""

    oom_score_adj: int = 0
    cap_sys_resource: bool = True
    systemd_cgroup: bool = False
    io_weight: bool = True
    """Whether the low-level runtime can set a block-IO weight here (runtime_shim.io_weight)."""
    available: Optional[Callable[[Optional[str]], Available]] = None
    """The CPUs and memory nodes a container with this ``linux.cgroupsPath`` can get
    (runtime_shim.cpuset, read on demand); None: nothing known limits them."""


@dataclass
class Context:
    """Inputs shared by all modifiers of one create; ``inventory`` runs discovery at most once.

    Mutable on purpose, in one field only: the MIG-lease modifier (first in the pipeline)
    replaces ``request`` with one naming the leased MIG UUIDs instead of profile tokens, so every
    later modifier sees the devices the container actually got. No other modifier writes it."""

    config: Config
    request: Optional[DeviceRequest]
    container_id: str = ""
    runtime_root: str = ""
    """The low-level runtime's state root for this call (``--root`` or its default); a MIG
    lease records it to tell later whether the runtime still knows the container."""
    bundle: str = ""
    host: HostFacts = field(default_factory=HostFacts)
    discover: Optional[Callable[[], Inventory]] = None
    _inventory: Optional[Inventory] = field(default=None, repr=False)

    def inventory(self) -> Inventory:
        """Discover the host's GPUs once, on the first modifier that needs them."""
        if self._inventory is None:
            if self.discover is None:
                from gpu_core.discovery import discover_from_config

                self._inventory = discover_from_config(self.config)
            else:
                self._inventory = self.discover()
        return self._inventory
