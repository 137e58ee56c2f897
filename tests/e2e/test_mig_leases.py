"""MIG by profile through the shim with real runc on the simulated dgx-a100-mig host (GPU 0:
seven 1g.10gb, GPU 1: two 3g.40gb): concurrent starts, GPU-pinned requests, release on delete
and by the poststop hook, and a shim killed while allocating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
from containers import SHIM, Bundle

if TYPE_CHECKING:
    from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
WriteConfig = Callable[[str], Path]
SimHostFactory = Callable[..., "SimHost"]

GPU_CTK = str(Path(sys.executable).parent / "gpu-ctk")
NOTHING_FREE_1G = ("gpu-container-runtime: mig: no free MIG instance of profile 1g.10gb: "
                   "7 exist, held by ")


class Node:
    """A shim configuration on the simulated host and a private runc state root."""

    def __init__(self, host: SimHost, config: Path, root: Path, work: Path) -> None:
        self.host = host
        self.config = config
        self.root = root
        self.work = work
        self.lease_dir = host.dir / "run" / "leases"
        self.created: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "GPU_CONTAINER_SHIM_CONFIG": str(self.config), **extra}

    def start_create(self, bundle: Bundle, cid: str, **env: str) -> subprocess.Popen[bytes]:
        """``create`` through the shim, stdio on files: a created container's init keeps its
        stdio open until started, so pipes would never reach EOF."""
        self.created.append(cid)
        with open(self.work / f"{cid}.out", "wb") as out:  # the child keeps its own copy
            return subprocess.Popen(
                [SHIM, "--root", str(self.root), "create", "--bundle", str(bundle.path), cid],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env(**env))

    def output(self, cid: str) -> str:
        return (self.work / f"{cid}.out").read_text()

    def shim(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SHIM, "--root", str(self.root), *args], capture_output=True,
                              text=True, env=self.env(), timeout=60, check=False)

    def leases(self) -> list[dict[str, Any]]:
        done = subprocess.run([GPU_CTK, "leases", "list", "--json"], capture_output=True,
                              text=True, env=self.env(), timeout=60, check=True)
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def init_pid(self, cid: str) -> int:
        done = subprocess.run(["runc", "--root", str(self.root), "state", cid],
                              capture_output=True, text=True, check=True)
        pid: int = json.loads(done.stdout)["pid"]
        return pid

    def cleanup(self) -> None:
        for cid in self.created:
            subprocess.run(["runc", "--root", str(self.root), "delete", "--force", cid],
                           capture_output=True, check=False)


@pytest.fixture
def node(sim_host_factory: SimHostFactory, write_config: WriteConfig, tmp_path: Path
         ) -> Any:
    """The dgx-a100-mig host with the shim on runc; the hook is /bin/true so that what is
    measured is the lease allocator, not libnvidia-container (test_hook_run_* uses the real
    hook)."""
    import yaml

    host = sim_host_factory("dgx-a100-mig")
    document = yaml.safe_load(host.config_path.read_text())
    document["runtimes"] = ["runc"]
    document["hook"] = {"path": "/bin/true", "args": ["true"]}
    document["log"] = {"file": str(tmp_path / "shim.log")}
    root = tmp_path / "state"
    root.mkdir()
    made = Node(host, write_config(yaml.safe_dump(document)), root, tmp_path)
    yield made
    made.cleanup()


def migs(host: SimHost, gpu: int) -> dict[str, dict[str, Any]]:
    """MIG UUID -> its topology entry (with gi/ci caps minors) on GPU ``gpu``."""
    return {m["uuid"]: m for m in host.topology["gpus"][gpu]["mig"]["devices"]}


def visible(bundle: Bundle) -> str:
    env = [e for e in bundle.spec()["process"]["env"] if e.startswith("NVIDIA_VISIBLE_DEVICES=")]
    assert len(env) == 1
    return env[0].partition("=")[2]


def caps_in_container(node: Node, cid: str) -> set[str]:
    """The nvidia-caps nodes runc created in the container's /dev (through /proc/<pid>/root)."""
    return set(os.listdir(f"/proc/{node.init_pid(cid)}/root/dev/nvidia-caps"))


def test_sixteen_concurrent_starts_lease_the_seven_instances(
        node: Node, make_bundle: MakeBundle) -> None:
    """16 creates at once asking for mig-1g.10gb: exactly 7 start, each with a different MIG
    device (caps nodes in the container, UUID in config.json), 9 fail with the one-line
    nothing-free error, the store holds exactly the 7 leases, and after deleting them all
    `gpu-ctk leases list` is empty."""
    bundles = {f"m{i:02d}": make_bundle(env=["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"])
               for i in range(16)}
    started = [(cid, node.start_create(bundle, cid)) for cid, bundle in bundles.items()]
    codes = {cid: proc.wait(timeout=120) for cid, proc in started}
    winners = sorted(cid for cid, code in codes.items() if code == 0)
    losers = sorted(cid for cid, code in codes.items() if code != 0)
    assert len(winners) == 7, {cid: node.output(cid) for cid in losers}

    instances = migs(node.host, 0)
    given = {cid: visible(bundles[cid]) for cid in winners}
    assert sorted(given.values()) == sorted(instances)
    for cid, uuid in given.items():
        wanted = {f"nvidia-cap{instances[uuid]['gi_cap_minor']}",
                  f"nvidia-cap{instances[uuid]['ci_cap_minor']}"}
        declared = {d["path"].rsplit("/", 1)[1] for d in bundles[cid].spec()["linux"]["devices"]
                    if d["path"].startswith("/dev/nvidia-caps/")}
        assert declared == wanted
        assert caps_in_container(node, cid) == wanted

    for cid in losers:
        line = node.output(cid)
        assert line.startswith(NOTHING_FREE_1G) and line.count("\n") == 1, line
        assert all(f"{w} ({u})" in line for w, u in given.items()), line
        assert visible(bundles[cid]) == "mig-1g.10gb"  # config.json untouched

    rows = node.leases()
    assert sorted((r["holder"], r["device"], r["profile"], r["status"]) for r in rows) == \
        sorted((cid, uuid, "1g.10gb", "live") for cid, uuid in given.items())
    assert sorted(os.listdir(node.lease_dir)) == [".lock", *(f"{c}.json" for c in winners)]

    for cid in winners:
        done = node.shim("delete", "--force", cid)
        assert done.returncode == 0, done.stderr
    assert node.leases() == []
    assert os.listdir(node.lease_dir) == [".lock"]


def test_gpu_pinned_profile_uses_both_instances_then_refuses(
        node: Node, make_bundle: MakeBundle) -> None:
    """`1.mig-3g.40gb` twice takes both instances on GPU 1; a third is refused naming both
    holders; deleting one frees its instance for the next request."""
    instances = migs(node.host, 1)
    first, second, third = (make_bundle(env=["NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb"])
                            for _ in range(3))
    for cid, bundle in (("p1", first), ("p2", second)):
        assert node.start_create(bundle, cid).wait(timeout=60) == 0, node.output(cid)
    assert sorted([visible(first), visible(second)]) == sorted(instances)
    assert node.start_create(third, "p3").wait(timeout=60) != 0
    assert node.output("p3") == (
        "gpu-container-runtime: mig: no free MIG instance of profile 3g.40gb on GPU 1: "
        f"2 exist, held by p1 ({visible(first)}), p2 ({visible(second)})\n")

    assert node.shim("delete", "--force", "p1").returncode == 0
    assert node.start_create(third, "p3b").wait(timeout=60) == 0, node.output("p3b")
    assert visible(third) == visible(first)


def test_delete_of_a_running_container_keeps_its_lease(
        node: Node, make_bundle: MakeBundle) -> None:
    """A `delete` runc refuses (container running, no --force) releases nothing."""
    bundle = make_bundle(["/bin/sleep", "30"], env=["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"])
    assert node.start_create(bundle, "busy").wait(timeout=60) == 0, node.output("busy")
    assert node.shim("start", "busy").returncode == 0
    refused = node.shim("delete", "busy")
    assert refused.returncode != 0
    assert [r["holder"] for r in node.leases()] == ["busy"]
    assert node.shim("delete", "--force", "busy").returncode == 0
    assert node.leases() == []


@pytest.mark.parametrize("point", ["mig-lease-before-commit", "mig-lease-after-commit"])
def test_shim_killed_while_allocating_leaves_a_readable_store(
        node: Node, make_bundle: MakeBundle, point: str) -> None:
    """SIGKILL at a fault point inside the allocation: the store stays readable, and the next
    allocations reclaim whatever the dead start held (both 3g.40gb on GPU 1 start again)."""
    victim = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb"])
    before = victim.config_path.read_bytes()
    proc = node.start_create(victim, "victim", GPU_CONTAINER_SHIM_FAULT=f"{point}:sleep")
    marker = (node.lease_dir / f".victim.{proc.pid}.tmp" if point.endswith("before-commit")
              else node.lease_dir / "victim.json")
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert marker.exists(), node.output("victim")
    time.sleep(0.1)  # past the write: the fault point is where it sleeps
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    listed = subprocess.run([GPU_CTK, "leases", "list", "--json"], capture_output=True,
                            text=True, env=node.env(), timeout=60, check=True)
    rows = json.loads(listed.stdout)
    if point.endswith("before-commit"):
        assert rows == []
        assert f"incomplete write .victim.{proc.pid}.tmp (writer pid {proc.pid} gone)" \
            in listed.stderr
    else:
        assert [(r["holder"], r["status"]) for r in rows] == [("victim", "stale")]
    assert victim.config_path.read_bytes() == before

    for cid in ("after1", "after2"):
        bundle = make_bundle(env=["NVIDIA_VISIBLE_DEVICES=1.mig-3g.40gb"])
        assert node.start_create(bundle, cid).wait(timeout=60) == 0, node.output(cid)
    assert sorted(r["holder"] for r in node.leases()) == ["after1", "after2"]
    assert sorted(os.listdir(node.lease_dir)) == [".lock", "after1.json", "after2.json"]


@pytest.mark.parametrize("mode", ["hook", "spec"])
def test_hook_run_uses_the_leased_instance_and_poststop_releases(
        sim_host_factory: SimHostFactory, write_config: WriteConfig,
        make_bundle: MakeBundle, tmp_path: Path, mode: str) -> None:
    """With the real hook (hook mode) or the driver mounts and the lean hook (spec mode),
    `runc run` of a `0.mig-1g.10gb` container sees exactly its two caps nodes; runc's own
    teardown runs our poststop hook, which releases the lease."""
    import yaml
    from spec_mode import config_document

    host = sim_host_factory("dgx-a100-mig")
    document = config_document(host, mode, runtimes=["runc"])
    config = write_config(yaml.safe_dump(document))
    bundle = make_bundle(["/bin/sh", "-c", "ls /dev/nvidia-caps"], overlay=True,
                         env=["NVIDIA_VISIBLE_DEVICES=0.mig-1g.10gb"])
    root = tmp_path / "state-hook"
    done = subprocess.run(
        [SHIM, "--root", str(root), "run", "--bundle", str(bundle.path), "hooked"],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
             "GPU_CONTAINER_SHIM_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    uuid = visible(bundle)
    mig = migs(host, 0)[uuid]
    assert done.stdout.split() == sorted(
        [f"nvidia-cap{mig['gi_cap_minor']}", f"nvidia-cap{mig['ci_cap_minor']}"])
    assert os.listdir(host.dir / "run" / "leases") == [".lock"]
