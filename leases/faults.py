"""Test-only fault points of the lease store.

With ``GPU_CONTAINER_SHIM_FAULT=<point>:<action>`` in the environment *and* a configuration that
points at a simulated host (``simulation.dir`` set), the shim stops at ``<point>``
(``mig-lease-before-commit``: half the lease written to its temp file, lock held;
``mig-lease-after-commit``: lease committed, config.json not yet written). ``sleep`` waits there
(for a test to SIGKILL it), ``abort`` kills the process with SIGKILL. Neither can do more than
stop the shim, which whoever sets the engine's environment can do anyway; production
configurations (no ``simulation`` section) never read the variable.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Optional

FAULT_ENV = "GPU_CONTAINER_SHIM_FAULT"
FAULT_SLEEP = 60.0
"""How long a ``sleep`` fault point waits for the test that set it to kill the process."""


def fault_point(name: str, enabled: bool, environ: Optional[Mapping[str, str]] = None) -> None:
    """Stop here when a test asked for it (see the module docstring); a no-op otherwise."""
    if not enabled:
        return
    env = os.environ if environ is None else environ
    for item in env.get(FAULT_ENV, "").split(","):
        point, _, action = item.strip().partition(":")
        if point != name:
            continue
        if action == "abort":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "sleep":
            time.sleep(FAULT_SLEEP)
