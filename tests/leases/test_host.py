"""What the host says about a lease's holder: runtime state and process start times."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from leases import host as lease_host


class TestHostObserver:
    def test_this_process_is_running(self) -> None:
        """Our own pid has a start time; a pid beyond pid_max has none."""
        assert lease_host.process_start(os.getpid()) is not None
        assert lease_host.process_start(2 ** 30) is None

    def test_runtime_state_directory(self, tmp_path: Path) -> None:
        """The runtime knows a container while <root>/<id> is a directory."""
        (tmp_path / "c1").mkdir()
        observer = lease_host.HostObserver()
        assert observer.runtime_knows(str(tmp_path), "c1")
        assert not observer.runtime_knows(str(tmp_path), "c2")

    def test_zombie_is_not_running(self, tmp_path: Path) -> None:
        """A dead child not yet reaped counts as gone."""
        child = subprocess.Popen(["/bin/true"])
        deadline = time.monotonic() + 5
        while lease_host.process_start(child.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lease_host.process_start(child.pid) is None
        child.wait()
