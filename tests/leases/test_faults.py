"""Test-only fault points: honoured only when enabled, only at the named point."""

from __future__ import annotations

import signal
import subprocess
import sys

from leases import faults as lease_faults


class TestFaultPoints:
    def test_disabled_points_never_read_the_environment(self) -> None:
        """Without a simulated host the variable is ignored (abort would kill this test)."""
        lease_faults.fault_point("p", False, {lease_faults.FAULT_ENV: "p:abort"})

    def test_other_points_do_nothing(self) -> None:
        """Only the named point stops."""
        lease_faults.fault_point("p", True, {lease_faults.FAULT_ENV: "q:abort, r:sleep"})

    def test_abort_kills_with_sigkill(self) -> None:
        """`<point>:abort` ends the process with SIGKILL, as a crash would."""
        code = ("from leases import faults; "
                "faults.fault_point('p', True, {'GPU_CONTAINER_SHIM_FAULT': 'p:abort'})")
        done = subprocess.run([sys.executable, "-c", code], check=False)
        assert done.returncode == -signal.SIGKILL
