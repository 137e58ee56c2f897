"""The device request model: what a container asked for (design.md §Device requests).

``parse_request(spec, config)`` is pure; both the shim and the hook call it, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass


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
