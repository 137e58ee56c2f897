"""Fixtures for fault tests: simulated hosts, a busybox image, GPU bundles, a stub low-level
runtime, and a runner for the shim with extra environment."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pytest
from containers import SHIM, Bundle, build_busybox_image
from hostguard import overlay_bundle, sim_runtime_config, unmount

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]

STUB_RUNTIME = """#!/bin/sh
echo "$@" >> {marker}
exit 97
"""


@pytest.fixture(scope="session")
def fault_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_image(tmp_path_factory.mktemp("fault-image") / "rootfs")


@dataclass
class Bench:
    """Bundles, configurations and shim runs for one test; overlays unmounted at the end."""

    tmp: Path
    image: Path
    factory: SimHostFactory
    stub_marker: Path
    bundles: list[Bundle] = field(default_factory=list)
    runc_roots: list[Path] = field(default_factory=list)

    @property
    def stub(self) -> Path:
        """A low-level runtime that records its arguments and exits 97."""
        path = self.tmp / "stub-runtime"
        if not path.exists():
            path.write_text(STUB_RUNTIME.format(marker=self.stub_marker))
            path.chmod(0o755)
        return path

    def host(self, topology: str = "dgx-a100", faults: Sequence[str] = ()) -> SimHost:
        return self.factory(topology, faults=faults)

    def bundle(self, env: Sequence[str] = ("NVIDIA_VISIBLE_DEVICES=0",),
               args: Sequence[str] = ("/bin/true",), where: Optional[Path] = None) -> Bundle:
        """A GPU bundle on an overlay over busybox (``where``: its directory)."""
        made = overlay_bundle(self.image, where or self.tmp / f"bundle-{len(self.bundles)}",
                              args, env)
        self.bundles.append(made)
        return made

    def config(self, host: SimHost, runtimes: Sequence[str] = (),
               **sections: Mapping[str, Any]) -> Path:
        path = self.tmp / f"config-{len(list(self.tmp.glob('config-*')))}.yaml"
        path.write_text(sim_runtime_config(host.config_path, list(runtimes) or [str(self.stub)],
                                           self.tmp / "shim.log", **sections))
        return path

    def shim(self, command: str, bundle: Bundle, config: Path, container_id: str = "ctr",
             timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        """``gpu-container-runtime --root R <command> --bundle B <id>`` with ``env`` added."""
        root = self.tmp / "runc-state"
        root.mkdir(exist_ok=True)
        if root not in self.runc_roots:
            self.runc_roots.append(root)
        return subprocess.run([SHIM, "--root", str(root), command, "--bundle", str(bundle.path),
                               container_id], capture_output=True, text=True, timeout=timeout,
                              check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                "GPU_CONTAINER_SHIM_CONFIG": str(config), **env})

    def runc_containers(self) -> list[Any]:
        """What runc still knows under this bench's state roots."""
        found: list[Any] = []
        for root in self.runc_roots:
            listed = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"],
                                    capture_output=True, text=True, check=False).stdout
            found += json.loads(listed or "null") or []
        return found

    def cleanup(self) -> None:
        for container in self.runc_containers():
            for root in self.runc_roots:
                subprocess.run(["runc", "--root", str(root), "delete", "--force",
                                container["id"]], capture_output=True, check=False)
        for bundle in self.bundles:
            unmount(bundle)


@pytest.fixture
def bench(tmp_path: Path, fault_image: Path, sim_host_factory: SimHostFactory) -> Iterator[Bench]:
    made = Bench(tmp=tmp_path, image=fault_image, factory=sim_host_factory,
                 stub_marker=tmp_path / "runtime-reached")
    yield made
    made.cleanup()
