"""What the OCI hook does for MIG leases (``leases``) at its lifecycle stages.

``poststop``: the runtime is destroying the container (runc runs poststop hooks from
``delete``, and from ``run``/``create`` when they fail), so its lease is released
(``leases.release``): the second path besides the shim's own ``delete``, for engines that call
the runtime's ``delete`` directly.
``prestart``: the container's init pid is recorded in its lease, one more sign of life for the
staleness rule. Both cost one ``stat`` for a container without a lease.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Optional

from gpu_core.errors import ShimError

if TYPE_CHECKING:
    from gpu_core.config import Config
    from leases.allocation import Lease


def _lease_dir(config: Config) -> str:
    return config.mig.lease_dir


def _has_lease(lease_dir: str, container_id: str) -> bool:
    from gpu_core.container_id import is_lease_name

    if not lease_dir or not is_lease_name(container_id):
        return False
    return os.path.lexists(os.path.join(lease_dir, container_id + ".json"))


def state_id(data: bytes) -> str:
    """The container id of an OCI state document; empty when there is none to read."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return ""
    value = document.get("id") if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""


def poststop(data: bytes, config: Optional[Config] = None) -> Optional[Lease]:
    """Release the lease of the container whose state is ``data``; the released lease."""
    from gpu_core import config as config_mod

    container_id = state_id(data)
    if not container_id:
        return None
    config = config or config_mod.load()
    lease_dir = _lease_dir(config)
    if not _has_lease(lease_dir, container_id):
        return None
    from leases.release import release

    return release(lease_dir, container_id, "poststop")


def prestart(config: Config, container_id: str, pid: int) -> None:
    """Record the init pid in the container's lease; a failure here never fails the start."""
    lease_dir = _lease_dir(config)
    if not _has_lease(lease_dir, container_id):
        return
    from leases.store import record_init

    # Failing to record it is harmless: the runtime's state root still tells whether the
    # container lives.
    with contextlib.suppress(ShimError):
        record_init(lease_dir, container_id, pid)
