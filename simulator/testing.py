"""The simulated GPU host for tests: ``build_host`` and the ``SimHost`` it returns.

Compiled libraries are cached by content (sources, topology, target directory, versions), so
rebuilding a host in the same directory costs only file copies and mknod calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from simulator import build as builder
from simulator import faults as fault_files


@dataclass(frozen=True)
class SimHost:
    """A simulated host built in ``dir``; point the project at it with ``env()``."""

    dir: Path
    config_path: Path  # DIR/config.yaml
    lib_dir: Path  # libnvidia-ml.so.1, libnvidia-container.so.1
    dev_dir: Path
    driver_dir: Path
    sys_dir: Path
    topology: dict[str, Any]  # the normalized topology (DIR/topology.json)

    @property
    def nvml_library(self) -> Path:
        return self.lib_dir / "libnvidia-ml.so.1"

    @property
    def nvc_library(self) -> Path:
        return self.lib_dir / "libnvidia-container.so.1"

    def env(self) -> dict[str, str]:
        """The variable that makes the shim, the hook and gpu-ctk use this host."""
        return {"GPU_CONTAINER_SHIM_CONFIG": str(self.config_path)}

    def set_faults(self, *specs: str) -> None:
        """Replace the active faults (and zero their counters), effective at once everywhere."""
        builder.set_faults(self.dir, specs)

    def faults(self) -> dict[str, str]:
        """The active faults by name."""
        return fault_files.active(self.dir)

    def fault_uses(self, name: str) -> int:
        """How many times the libraries have consulted counted fault ``name`` so far."""
        path = self.dir / "faults" / f"{name}.count"
        return int(path.read_text(encoding="utf-8").strip() or 0) if path.is_file() else 0


def host_at(sim_dir: Path) -> SimHost:
    """The SimHost of a directory that already holds a built host."""
    sim_dir = sim_dir.absolute()
    return SimHost(dir=sim_dir, config_path=sim_dir / "config.yaml", lib_dir=sim_dir / "lib",
                   dev_dir=sim_dir / "dev", driver_dir=sim_dir / "driver",
                   sys_dir=sim_dir / "sys", topology=builder.read_topology(sim_dir))


def build_host(topology: str, into: Path, faults: Sequence[str] = (),
               nvc_version: Optional[str] = None, *, cache_dir: Optional[Path] = None,
               compiler: Optional[str] = None, reset_state: bool = True) -> SimHost:
    """Build (or rebuild, from the compile cache) the host of ``topology`` in ``into``, with
    ``faults`` active; DIR/run and DIR/log start empty unless ``reset_state`` is false."""
    builder.build(topology, into, faults, nvc_version, cache_dir=cache_dir, compiler=compiler,
                  reset_state=reset_state)
    return host_at(into)
