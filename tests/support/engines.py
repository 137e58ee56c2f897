"""Container engines (dockerd, containerd, podman) started by end-to-end tests on private
sockets and directories: never the machine's own configuration, state or daemons.

Importable as ``engines`` (pyproject puts tests/support on sys.path). Each daemon runs in its
own session; ``stop`` ends it, then ends any process still naming its private directory (the
containerd shims and conmon, which start sessions of their own) and unmounts what is left
below that directory, so a failed test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

VENV_BIN = Path(sys.executable).parent
SHIM = str(VENV_BIN / "gpu-container-runtime")
STANDALONE_HOOK = str(VENV_BIN / "nvidia-container-runtime-hook")
GPU_CTK = str(VENV_BIN / "gpu-ctk")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ENXIO = "No such device or address"
"""What opening a simulated GPU node gives once the device cgroup allows it (no driver)."""
EPERM = "Operation not permitted"
"""What it gives when the device cgroup denies it."""


def installed_hook() -> str:
    """The venv's standalone hook script; a venv installed before it existed needs
    ``pip install -e .`` again (scripts/bootstrap does that)."""
    assert os.access(STANDALONE_HOOK, os.X_OK), f"{STANDALONE_HOOK} missing: reinstall the venv"
    return STANDALONE_HOOK


def gpu_ctk(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``gpu-ctk`` console script; a failure fails the test."""
    result = subprocess.run([GPU_CTK, *args], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result


def copy_rootfs(image: Path, into: Path) -> Path:
    """A private copy of the busybox root (the hook creates mount points in it)."""
    shutil.copytree(image, into, symlinks=True)
    return into


@dataclass
class Daemon:
    """One engine daemon on a private directory."""

    name: str
    directory: Path
    argv: Sequence[str]
    env: Mapping[str, str]
    ready: Callable[[], bool]
    process: Optional[subprocess.Popen[bytes]] = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / f"{self.name}.log"

    def start(self, timeout: float = 30) -> None:
        with open(self.log, "wb") as stream:
            self.process = subprocess.Popen(list(self.argv), env=dict(self.env), stdout=stream,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: "
                                   f"{self.log.read_text()[-3000:]}")
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        sweep(self.directory)


def sweep(directory: Path) -> None:
    """End the processes whose command line names ``directory``, then unmount below it."""
    here = str(directory)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(arg == here or arg.endswith("=" + here) or here + "/" in arg for arg in args):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as stream:
        for line in stream:
            point = line.split()[4].replace("\\040", " ")
            if point == str(directory) or point.startswith(str(directory) + "/"):
                mounts.append(point)
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def listening(socket: Path, probe: Sequence[str]) -> Callable[[], bool]:
    """Readiness: the socket exists and ``probe`` (a client command) succeeds."""
    def ready() -> bool:
        return socket.exists() and subprocess.run(
            list(probe), capture_output=True, timeout=10, check=False).returncode == 0
    return ready
