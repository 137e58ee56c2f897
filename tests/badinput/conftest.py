"""Fixtures for the bad-input corpus: one simulated host, a valid GPU bundle per test, a stub
low-level runtime that records being reached, and runners for the shim and the hook."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pytest
from containers import SHIM
from hostguard import sim_runtime_config

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]

STUB_RUNTIME = """#!/bin/sh
echo reached >> {marker}
exit 97
"""


@pytest.fixture(scope="session")
def badinput_host(sim_host_factory: SimHostFactory) -> SimHost:
    return sim_host_factory("dgx-a100")


@dataclass
class Workspace:
    """A valid GPU bundle, a shim configuration whose runtime is a stub, and the runners."""

    tmp: Path
    host: SimHost
    bundle: Path
    config: Path
    marker: Path
    """Written by the stub runtime: bad input must never get that far."""

    @property
    def config_json(self) -> Path:
        return self.bundle / "config.json"

    def good_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = json.loads((self.tmp / "good-config.json").read_text())
        return spec

    def shim(self, config: Optional[Path] = None) -> subprocess.CompletedProcess[bytes]:
        """``create`` through the shim (the engine's call), as a GPU container."""
        return subprocess.run([SHIM, "--root", str(self.tmp / "state"), "create", "--bundle",
                               str(self.bundle), "bad-input"], capture_output=True,
                              timeout=60, check=False,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                   "GPU_CONTAINER_SHIM_CONFIG": str(config or self.config)})

    def hook(self, state: bytes) -> subprocess.CompletedProcess[bytes]:
        """The prestart hook as runc runs it: the entry's argv and env, state on stdin."""
        return subprocess.run([sys.executable, "-I", "-m", "hook", "prestart"], input=state,
                              capture_output=True, timeout=60, check=False,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                   "GPU_CONTAINER_SHIM_CONFIG": str(self.config)})


@pytest.fixture
def workspace(tmp_path: Path, badinput_host: SimHost) -> Workspace:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    (bundle / "rootfs").mkdir()
    spec["process"]["env"].append("NVIDIA_VISIBLE_DEVICES=0")
    text = json.dumps(spec, indent=2)
    (bundle / "config.json").write_text(text)
    (tmp_path / "good-config.json").write_text(text)
    marker = tmp_path / "runtime-reached"
    stub = tmp_path / "stub-runtime"
    stub.write_text(STUB_RUNTIME.format(marker=marker))
    stub.chmod(0o755)
    config = tmp_path / "config.yaml"
    config.write_text(sim_runtime_config(badinput_host.config_path, [str(stub)],
                                         tmp_path / "shim.log"))
    return Workspace(tmp=tmp_path, host=badinput_host, bundle=bundle, config=config,
                     marker=marker)
