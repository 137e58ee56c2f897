"""Fixtures for adversarial images: the simulated hosts (built once per session), a busybox
image with traps planted in it, host-side traps, and a sandbox per test that starts one
container through shim, hook and simulated libnvidia-container with real runc and checks that
nothing outside the rootfs changed."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pytest
from containers import SHIM, Bundle, build_busybox_image
from hostguard import (
    Canary,
    Traps,
    build_traps,
    host_snapshot,
    overlay_bundle,
    plant_image_traps,
    sim_runtime_config,
    unmount,
)

if TYPE_CHECKING:
    from simulator.testing import SimHost

SimHostFactory = Callable[..., "SimHost"]


@pytest.fixture(scope="session")
def traps(tmp_path_factory: pytest.TempPathFactory) -> Traps:
    return build_traps(tmp_path_factory.mktemp("traps"))


@pytest.fixture(scope="session")
def trapped_image(tmp_path_factory: pytest.TempPathFactory, traps: Traps) -> Path:
    """busybox with an ldconfig, a CLI, a shared object and Python modules that all record
    running, so a hook that ran image code on the host would leave the marker."""
    image = build_busybox_image(tmp_path_factory.mktemp("adversarial-image") / "rootfs")
    plant_image_traps(image, traps)
    return image


def add_driver_extras(host: SimHost) -> None:
    """The files a real driver host also has and the library mounts: the persistenced socket
    (under /var/run), the MPS pipe directory (/tmp) and GSP firmware (/lib/firmware)."""
    driver = host.driver_dir
    sock_dir = driver / "var" / "run" / "nvidia-persistenced"
    sock_dir.mkdir(parents=True, exist_ok=True)
    if not (sock_dir / "socket").exists():
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(sock_dir / "socket"))
    (driver / "tmp" / "nvidia-mps").mkdir(parents=True, exist_ok=True)
    firmware = driver / "lib" / "firmware" / "nvidia" / str(host.topology["driver_version"])
    firmware.mkdir(parents=True, exist_ok=True)
    (firmware / "gsp_ga10x.bin").write_bytes(b"simulated GSP firmware\n")


@pytest.fixture(scope="session")
def adversarial_hosts(sim_host_factory: SimHostFactory) -> dict[str, SimHost]:
    """One simulated host per topology for the whole session."""
    hosts = {name: sim_host_factory(name) for name in ("dgx-a100", "dgx-a100-mig")}
    for host in hosts.values():
        add_driver_extras(host)
    return hosts


@dataclass
class Started:
    """One container start: runc's result, the bundle and what the checks found."""

    returncode: int
    stdout: str
    stderr: str
    bundle: Bundle
    outside: list[str] = field(default_factory=list)
    """Every change outside the rootfs: canary entries and mounts, real host paths, traps."""


@dataclass
class Sandbox:
    """Starts containers for one test and proves afterwards that only their rootfs changed."""

    tmp: Path
    image: Path
    traps: Traps
    hosts: Mapping[str, SimHost]
    canary: Canary
    bundles: list[Bundle] = field(default_factory=list)
    started: list[tuple[Path, str]] = field(default_factory=list)

    def bundle(self, env: Sequence[str] = ("NVIDIA_VISIBLE_DEVICES=0",),
               args: Sequence[str] = ("/bin/true",),
               annotations: Optional[Mapping[str, str]] = None) -> Bundle:
        made = overlay_bundle(self.image, self.tmp / f"bundle-{len(self.bundles)}", args, env,
                              annotations)
        self.bundles.append(made)
        return made

    def config(self, topology: str = "dgx-a100", **sections: Any) -> Path:
        path = self.tmp / f"config-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(sim_runtime_config(self.hosts[topology].config_path, ["runc"],
                                           self.tmp / "shim.log", **sections))
        return path

    def start(self, bundle: Bundle, topology: str = "dgx-a100", timeout: float = 60,
              config: Optional[Path] = None, **sections: Any) -> Started:
        """``run`` the bundle through the shim with runc, then check everything outside it."""
        root = self.tmp / "runc-state"
        root.mkdir(exist_ok=True)
        cid = f"adv-{uuid.uuid4().hex[:10]}"
        self.started.append((root, cid))
        config = config or self.config(topology, **sections)
        before = host_snapshot([self.canary.root, self.traps.dir])
        self.traps.marker.unlink(missing_ok=True)
        result = subprocess.run([SHIM, "--root", str(root), "run", "--bundle", str(bundle.path),
                                 cid], capture_output=True, text=True, timeout=timeout,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                     "GPU_CONTAINER_SHIM_CONFIG": str(config)}, check=False)
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid],
                       capture_output=True, check=False)
        outside = self.canary.changes()
        after = host_snapshot([self.canary.root, self.traps.dir])
        outside += [f"host: {key} {before[key]!r} -> {after[key]!r}" for key in before
                    if before[key] != after[key]]
        if self.traps.ran():
            outside.append(f"image code ran on the host: {self.traps.ran()!r}")
        return Started(result.returncode, result.stdout, result.stderr, bundle, outside)

    def cleanup(self) -> None:
        for root, cid in self.started:
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid],
                           capture_output=True, check=False)
        for bundle in self.bundles:
            unmount(bundle)


@pytest.fixture
def sandbox(tmp_path: Path, trapped_image: Path, traps: Traps,
            adversarial_hosts: dict[str, SimHost]) -> Iterator[Sandbox]:
    box = Sandbox(tmp=tmp_path, image=trapped_image, traps=traps, hosts=adversarial_hosts,
                  canary=Canary.build(tmp_path / "host"))
    yield box
    box.cleanup()
