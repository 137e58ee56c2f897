"""Containers inside ``gpu-ctk simulate run``: a GPU container with a user namespace and uid/gid
mappings starts through the shim and real runc. runc cannot mknod in a user namespace, so it
bind-mounts each device node from its path on the host: /dev/nvidia2 must exist there, and a
proc and sysfs must stay fully visible for the container's own mounts (README, "The simulated GPU
host")."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
from containers import Bundle

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIM = str(Path(sys.executable).with_name("gpu-container-runtime"))
MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def with_user_namespace(spec: dict[str, Any]) -> None:
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = MAPPING
    spec["linux"]["gidMappings"] = MAPPING


def traversable(path: Path) -> None:
    """Let the mapped uids reach a bundle under pytest's private temporary tree (0700)."""
    for directory in (path, *path.parents):
        if directory == Path(directory.anchor) or directory == Path("/tmp"):
            break
        os.chmod(directory, directory.stat().st_mode | 0o011)


def run_inside(host: SimHost, config: Path, bundle: Bundle, state: Path, *,
               through_shim: bool = True) -> subprocess.CompletedProcess[str]:
    cid = f"e2e-userns-{uuid.uuid4().hex[:8]}"
    runtime = SHIM if through_shim else "runc"
    script = (f"{runtime} --root {state} run --bundle {bundle.path} {cid}; status=$?; "
              f"runc --root {state} delete --force {cid} >/dev/null 2>&1; exit $status")
    env = {**os.environ, "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "ctk.main", "simulate", "run", "--host",
                           str(host.dir), "--", "sh", "-c", script], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=120, check=False)


def test_gpu_container_with_user_namespace_and_uid_mappings_starts(
        sim_host_factory: Callable[..., SimHost], make_bundle: Callable[..., Bundle],
        write_config: Callable[[str], Path], tmp_path: Path) -> None:
    host = sim_host_factory("dgx-a100")
    config = write_config(host.config_path.read_text() + "\nruntimes: [runc]\n")
    bundle = make_bundle(["/bin/sh", "-c", "cat /proc/self/uid_map; stat -c '%n %t:%T' "
                          "/dev/nvidia2; head -c1 /dev/nvidia2"],
                         env=["NVIDIA_VISIBLE_DEVICES=2"])
    bundle.edit(with_user_namespace)
    traversable(bundle.path)
    result = run_inside(host, config, bundle, tmp_path / "state")
    assert result.stdout.split() == ["0", "100000", "65536", "/dev/nvidia2", "c3:2"], \
        result.stderr
    assert "No such device or address" in result.stderr


def test_user_namespace_container_mounts_its_own_proc_and_sysfs(
        sim_host_factory: Callable[..., SimHost], make_bundle: Callable[..., Bundle],
        write_config: Callable[[str], Path], tmp_path: Path) -> None:
    """Plain runc, no GPU: the grafts over /proc/driver and /sys do not cost user-namespace
    containers their /proc and /sys."""
    host = sim_host_factory("t4")
    config = write_config(host.config_path.read_text())
    bundle = make_bundle(["/bin/sh", "-c", "stat -f -c %T /proc /sys"])
    bundle.edit(with_user_namespace)
    traversable(bundle.path)
    result = run_inside(host, config, bundle, tmp_path / "state", through_shim=False)
    assert result.stdout.split() == ["proc", "sysfs"], result.stderr
