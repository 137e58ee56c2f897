"""Workload policies end to end: the shim's config.json on a simulated two-socket DGX A100, and
real containers on a simulated host whose NUMA layout fits this machine.

What is checked where: the DGX case starts a real container under runc on whatever machine runs
the tests. Node 1 of a DGX (CPUs 64-127, memory node 1) is mostly absent from a small test
machine, so placement keeps to what a container can get here (runtime_shim.cpuset): narrowed,
or skipped with a note; each test asserts the decision the shim makes for this host. The effect
of a placement inside a container is checked on a copy of the simulated sysfs whose node 0 holds
one of this machine's CPUs: Cpus_allowed_list/Mems_allowed_list in /proc/self/status, the memory
and block-IO cgroup files, /proc/self/oom_score_adj.

The block-IO weight is set only where the low-level runtime can apply it (runtime_shim.io_weight):
on these Debian 12 machines (cgroup v1, BFQ) runc writes ``blkio.bfq.weight`` and the container
sees 800, while crun 1.8 would fail its start writing ``blkio.weight``, so for crun the weight is
skipped, the log says so, and the container starts with the rest of the policy.

The injected OCI hook is replaced by /bin/true: what the hook mounts is not under test here, and
the policies act on config.json before any hook runs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from containers import Bundle, Runtime, sha256
from oci_schema import config_errors
from spec_mode import SPEC_HOOK

from gpu_core.numa import format_ids, parse_ids
from runtime_shim import cpuset, io_weight
from simulator.testing import SimHost

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]

MIB = 1024 ** 2
LIMIT = 256 * MIB
OWN_OOM = 100
"""The shim runs at this oom_score_adj (raised from the test's, which needs no capability), so
the clamp of guaranteed's -800 to the runtime's own value shows as 100 inside."""


@pytest.fixture(scope="module")
def dgx(sim_host_factory: Callable[..., SimHost]) -> SimHost:
    """The simulated dgx-a100: GPUs 0-3 on NUMA node 0 (CPUs 0-63), 4-7 on node 1 (64-127)."""
    return sim_host_factory("dgx-a100")


def shim_config(sim: SimHost, path: Path, runtime: str, sysfs: Optional[Path] = None,
                **overrides: Any) -> Path:
    """The simulated host's config.yaml with ``runtimes: [runtime]``, a stand-in hook, another
    sysfs root when given, and the given top-level sections replaced."""
    import yaml

    document = yaml.safe_load(sim.config_path.read_text())
    document.update({"runtimes": [runtime], "hook": {"path": "/bin/true", "args": ["true"]},
                     "log": {"file": str(path.parent / "shim.log")}, **overrides})
    if sysfs is not None:
        document["host"]["sysfs_root"] = str(sysfs)
    path.write_text(yaml.safe_dump(document))
    return path


def gpu_bundle(make_bundle: MakeBundle, args: list[str], visible: str, policy: str) -> Bundle:
    """A bundle asking for GPU ``visible`` under ``policy`` with a 256 MiB memory limit."""
    bundle = make_bundle(args, env=[f"NVIDIA_VISIBLE_DEVICES={visible}"],
                         annotations={"ai.scheduling.policy": policy})
    bundle.edit(lambda spec: spec["linux"].setdefault("resources", {}).__setitem__(
        "memory", {"limit": LIMIT}))
    return bundle


def raise_own_oom_score() -> None:
    with open("/proc/self/oom_score_adj", "w") as stream:
        stream.write(str(OWN_OOM))


# --- the must-show: dgx-a100, GPU 5, guaranteed, a real container on this machine -------------

def placement(spec: dict[str, Any], cpus: frozenset[int], mems: frozenset[int]
              ) -> Optional[dict[str, str]]:
    """The cpu section the shim decides for a node with ``cpus``/``mems`` on this machine: what
    is left of them inside what a container can get here (runtime_shim.cpuset), or None when
    nothing is left and placement is skipped."""
    available = cpuset.read_available(spec["linux"].get("cgroupsPath"), systemd=False)
    fit_cpus = cpus if available.cpus is None else cpus & available.cpus
    fit_mems = mems if available.mems is None else mems & available.mems
    if not fit_cpus or not fit_mems:
        return None
    return {"cpus": format_ids(fit_cpus), "mems": format_ids(fit_mems)}


NODE1 = (frozenset(range(64, 128)), frozenset({1}))
"""Node 1 of the simulated dgx-a100."""


@pytest.mark.parametrize("mode", ["hook", "spec"])
def test_dgx_gpu5_guaranteed_starts_a_real_container(
        dgx: SimHost, make_bundle: MakeBundle, make_runtime: MakeRuntime,
        tmp_path: Path, mode: str) -> None:
    """NVIDIA_VISIBLE_DEVICES=5 under guaranteed starts under runc on this machine (hook mode,
    and spec mode with its driver mounts and the lean hook): node 1's
    cpus and mems as far as this machine can give them (placement narrowed, or skipped with a
    note when nothing of node 1 is here), swap equal to the limit, the block-IO weight where
    runc can set one here (skipped with a note elsewhere), oomScoreAdj clamped to the
    runtime's own, and a valid OCI config."""
    bundle = gpu_bundle(make_bundle, ["/bin/sh", "-c", PROBE], "5", "guaranteed")
    spec_mode = {"mode": "spec", "spec": {"hook_path": SPEC_HOOK}} if mode == "spec" else {}
    runtime = make_runtime(shim_config(dgx, tmp_path / "c.yaml", "runc", **spec_mode))
    result = runtime.run(bundle, preexec_fn=raise_own_oom_score)
    assert result.returncode == 0, result.stderr
    spec = bundle.spec()
    resources = spec["linux"]["resources"]
    log = (tmp_path / "shim.log").read_text()
    placed = placement(spec, *NODE1)
    assert resources.get("cpu") == placed
    seen = probe(result.stdout)
    if placed is None:
        assert ("numa: policy guaranteed: placement skipped: GPU 5 on node 1 (cpus 64-127, "
                "mems 1) outside what the container can get here (host online cpus ") in log
    else:
        assert (seen["Cpus_allowed_list"], seen["Mems_allowed_list"]) == \
            (placed["cpus"], placed["mems"])
        assert f"linux.resources.cpu.cpus {placed['cpus']}" in log
    assert resources["memory"] == {"limit": LIMIT, "swap": LIMIT}
    assert (swap_off(seen), seen["oom"]) == (True, str(OWN_OOM))
    settable = io_weight.probe(shutil.which("runc") or "runc")
    assert resources.get("blockIO") == ({"weight": 800} if settable else None)
    assert ("policy: linux.resources.blockIO.weight 800" in log) is settable
    assert ("policy: blkio weight 800 skipped" in log) is not settable
    assert spec["process"]["oomScoreAdj"] == OWN_OOM  # -800 asked, no CAP_SYS_RESOURCE here
    assert [d["path"] for d in spec["linux"]["devices"]][:1] == ["/dev/nvidia5"]
    assert config_errors(spec) == []
    for note in ("policy: guaranteed (from annotation): oom_score_adj -800, swap off, "
                 "numa placement, blkio weight 800",
                 f"policy: linux.resources.memory.swap {LIMIT}",
                 f"oom: policy guaranteed value -800 clamped to {OWN_OOM}"):
        assert note in log


def test_dgx_engine_cpuset_is_only_narrowed(dgx: SimHost, make_bundle: MakeBundle,
                                            make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """An engine cpuset across both sockets is cut to node 1's part (as far as this machine has
    it); one on node 0 only is left alone, since GPU 5's node shares nothing with it."""
    runtime = make_runtime(shim_config(dgx, tmp_path / "spec-only.yaml", "/bin/true"))
    seen, expected = [], []
    for engine in ({"cpus": "60-70"}, {"cpus": "0-7", "mems": "0"}):
        bundle = gpu_bundle(make_bundle, ["/bin/true"], "5", "burstable")
        spec = bundle.spec()
        spec["linux"]["resources"]["cpu"] = engine
        bundle.write(spec)
        assert runtime.call(["create", "--bundle", str(bundle.path), "x"]).returncode == 0
        seen.append(bundle.spec()["linux"]["resources"]["cpu"])
        narrowed = placement(bundle.spec(), frozenset(range(64, 71)), frozenset({1}))
        expected.append(narrowed if "mems" not in engine and narrowed else engine)
    assert seen == expected


@pytest.mark.parametrize(("unknown", "accepted"), [("error", False), ("ignore", True)])
def test_dgx_unknown_policy_follows_config(dgx: SimHost, make_bundle: MakeBundle,
                                           make_runtime: MakeRuntime, tmp_path: Path,
                                           unknown: str, accepted: bool) -> None:
    """policy.unknown error: one error line and config.json untouched; ignore: the container
    is created with no policy edits."""
    bundle = gpu_bundle(make_bundle, ["/bin/true"], "5", "platinum")
    runtime = make_runtime(shim_config(dgx, tmp_path / "c.yaml", "/bin/true",
                                       policy={"unknown": unknown}))
    before = sha256(bundle.config_path)
    result = runtime.call(["create", "--bundle", str(bundle.path), "x"])
    if not accepted:
        assert result.returncode != 0
        assert result.stderr == ("gpu-container-runtime: policy: unknown policy 'platinum' "
                                 "from annotation; configured: burstable, guaranteed\n")
        assert sha256(bundle.config_path) == before
        return
    assert result.returncode == 0, result.stderr
    resources = bundle.spec()["linux"]["resources"]
    assert (resources.get("cpu"), resources["memory"], resources.get("blockIO")) == \
        (None, {"limit": LIMIT}, None)
    assert "ignored unknown policy 'platinum'" in (tmp_path / "shim.log").read_text()


# --- real containers: a host whose node 0 is one of this machine's CPUs -------------------------

def allowed_cpus() -> frozenset[int]:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith("Cpus_allowed_list:"):
                return parse_ids(line.split(":", 1)[1])
    raise AssertionError("no Cpus_allowed_list in /proc/self/status")


@pytest.fixture
def small_host(dgx: SimHost, tmp_path: Path) -> Iterator[tuple[SimHost, Path, int]]:
    """The dgx-a100 with a copied sysfs whose node 0 holds only this machine's highest CPU."""
    sysfs = tmp_path / "sys"
    shutil.copytree(dgx.sys_dir, sysfs)
    cpu = max(allowed_cpus())
    (sysfs / "devices/system/node/node0/cpulist").write_text(f"{cpu}\n")
    yield dgx, sysfs, cpu


# What the container sees of its own limits, on either cgroup layout: v1 (memory.* and blkio.*
# files under per-controller mounts) or v2 (one unified mount). ``swap_off`` is what the
# guaranteed policy's swap limit (memory+swap = memory) reads as there: v1's memsw limit equal
# to the memory limit, v2's swap.max of 0 (runc converts one into the other).
PROBE = ("grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status; "
         "echo oom=$(cat /proc/self/oom_score_adj); "
         "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then "
         "echo layout=v2; "
         "echo limit=$(cat /sys/fs/cgroup/memory.max); "
         "echo swap=$(cat /sys/fs/cgroup/memory.swap.max); "
         "echo weight=$(cat /sys/fs/cgroup/io.bfq.weight /sys/fs/cgroup/io.weight 2>/dev/null "
         "| head -n1); "
         "else "
         "echo layout=v1; "
         "echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
         "echo memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes); "
         "echo weight=$(cat /sys/fs/cgroup/blkio/blkio.bfq.weight "
         "/sys/fs/cgroup/blkio/blkio.weight 2>/dev/null | head -n1); "
         "fi")


def swap_off(seen: dict[str, str]) -> bool:
    """Whether the container's memory+swap limit equals its memory limit (no swap)."""
    if seen["layout"] == "v2":
        return seen["swap"] == "0"
    return seen["memsw"] == seen["limit"]


def io_weight_seen(seen: dict[str, str]) -> str:
    """The container's IO weight: v1 prints the number, v2 ``default N``."""
    return seen["weight"].removeprefix("default ").strip()


def probe(output: str) -> dict[str, str]:
    values = {}
    for line in output.splitlines():
        key, sep, value = line.replace(":\t", "=").partition("=")
        if sep:
            values[key] = value.strip()
    return values


INSIDE_CASES = [("runc", "guaranteed"), ("runc", "burstable"), ("crun", "guaranteed"),
                ("crun", "burstable")]


@pytest.mark.parametrize(("runtime_name", "policy"), INSIDE_CASES,
                         ids=[f"{r}-{p}" for r, p in INSIDE_CASES])
def test_policy_observed_inside_container(small_host: tuple[SimHost, Path, int],
                                          make_bundle: MakeBundle, make_runtime: MakeRuntime,
                                          tmp_path: Path, runtime_name: str, policy: str) -> None:
    """GPU 0 (node 0) under a policy: the container starts on node 0's CPU and memory node, and
    the policy's swap-off, IO weight (where the runtime can set one) and clamped oom score are
    what it sees."""
    host, sysfs, cpu = small_host
    bundle = gpu_bundle(make_bundle, ["/bin/sh", "-c", PROBE], "0", policy)
    config = shim_config(host, tmp_path / "c.yaml", runtime_name, sysfs)
    runtime = make_runtime(config, runtime_name)
    result = runtime.run(bundle, preexec_fn=raise_own_oom_score)
    assert result.returncode == 0, result.stderr
    seen = probe(result.stdout)
    assert (seen["Cpus_allowed_list"], seen["Mems_allowed_list"]) == (str(cpu), "0")
    assert seen["limit"] == str(LIMIT)
    if policy == "guaranteed":
        assert (swap_off(seen), seen["oom"]) == (True, str(OWN_OOM))
        settable = io_weight.probe(shutil.which(runtime_name) or runtime_name)
        assert (io_weight_seen(seen) == "800") is settable
        skipped = "policy: blkio weight 800 skipped" in (tmp_path / "shim.log").read_text()
        assert skipped is not settable
    else:
        assert seen["oom"] == "500"
        assert not swap_off(seen)


def test_container_without_policy_keeps_all_cpus(small_host: tuple[SimHost, Path, int],
                                                 make_bundle: MakeBundle,
                                                 make_runtime: MakeRuntime,
                                                 tmp_path: Path) -> None:
    """Without a policy the same GPU container runs on every CPU this machine allows."""
    host, sysfs, _ = small_host
    bundle = make_bundle(["/bin/sh", "-c", PROBE], env=["NVIDIA_VISIBLE_DEVICES=0"])
    config = shim_config(host, tmp_path / "c.yaml", "runc", sysfs)
    result = make_runtime(config).run(bundle)
    assert result.returncode == 0, result.stderr
    assert parse_ids(probe(result.stdout)["Cpus_allowed_list"]) == allowed_cpus()
    assert "cpu" not in json.loads(bundle.config_path.read_text())["linux"]["resources"]

