"""The benchmark table as data: each row is a pair of measurements (A against B) or a peak-memory
probe, with the target from issue 9. ``prepare`` builds what a row needs and returns the two
measurements; each measurement does its own untimed preparation and times one thing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from workspace import NOOP, REPO, BundleDir, Workspace

Measure = Callable[[], float]
"""One timed run: returns seconds."""

GPU0 = "NVIDIA_VISIBLE_DEVICES=0"
MIB = 1 << 20


@dataclass(frozen=True)
class Pair:
    """The two sides of a row and how to clean up after them."""

    a: Measure
    b: Measure
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Case:
    """A table row: A/B per round, judged by the median ratio against ``target`` (None: shown
    for comparison only)."""

    key: str
    title: str
    a_label: str
    b_label: str
    target: Optional[float]
    rounds: int
    quick_rounds: int
    prepare: Callable[[Workspace], Pair]


@dataclass(frozen=True)
class MemoryCase:
    """A peak-RSS row: the largest of ``runs`` measurements against ``limit`` bytes."""

    key: str
    title: str
    limit: int
    runs: int
    measure: Callable[[Workspace], int]


def run_once(ws: Workspace, argv: Sequence[str], env: dict[str, str]) -> None:
    subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                   check=True)


def fresh_run(ws: Workspace, spec: dict[str, Any], env: dict[str, str], through_shim: bool,
              overlay: bool = True) -> float:
    """``run`` one container from a new bundle (prepared and removed outside the timing)."""
    bundle = ws.bundle(spec, overlay=overlay)
    try:
        cid = ws.next_id("run")
        argv = (ws.shim if through_shim else ws.runc)("run", "--bundle", str(bundle.path), cid)
        return ws.timed(argv, env)
    finally:
        bundle.remove()


def rewritten_by_shim(ws: Workspace, spec: dict[str, Any], topology: str) -> dict[str, Any]:
    """The config.json the shim writes for ``spec`` (run with a no-op low-level runtime)."""
    config = ws.sim_config(topology, runtimes=[NOOP])
    bundle = ws.bundle(spec)
    try:
        run_once(ws, ws.shim("create", "--bundle", str(bundle.path), ws.next_id("rewrite")),
                 ws.env(config))
        rewritten: dict[str, Any] = json.loads(bundle.config.read_text())
    finally:
        bundle.remove()
    return rewritten


def with_noop_hook(spec: dict[str, Any], hook_path: str) -> dict[str, Any]:
    """``spec`` with our hook entries replaced by a hook that does nothing."""
    hooks = {stage: [{"path": NOOP, "args": ["true"]} if entry.get("path") == hook_path
                     else entry for entry in entries]
             for stage, entries in spec.get("hooks", {}).items()}
    if hooks == spec.get("hooks", {}):
        raise RuntimeError("the shim injected no hook: is the simulated host config right?")
    return {**spec, "hooks": hooks}


# -- rows -------------------------------------------------------------------------------------


def state_pair(ws: Workspace, shim: Sequence[str]) -> Pair:
    """``state`` of one created container: ``shim`` (argv prefix) against runc."""
    env = ws.env(ws.sim_config("t4"))
    bundle = ws.bundle(ws.base_spec(["/bin/sleep", "1000000"]))
    cid = ws.next_id("state")
    run_once(ws, ws.runc("create", "--bundle", str(bundle.path), cid), env)

    def close() -> None:
        subprocess.run(ws.runc("delete", "--force", cid), capture_output=True, check=False)
        bundle.remove()

    return Pair(a=lambda: ws.timed([*shim, "--root", str(ws.state_root), "state", cid], env),
                b=lambda: ws.timed(ws.runc("state", cid), env), close=close)


def passthrough_state(ws: Workspace) -> Pair:
    pair = state_pair(ws, [ws.runtime])
    pair.a()  # the first call reaches Python, which writes the fast-path entry
    if not (ws.fastpath_dir / "named").is_file():
        pair.close()
        raise RuntimeError("no fast-path entry after a call: the launcher would start Python")
    return pair


def passthrough_state_python(ws: Workspace) -> Pair:
    """The same call when the launcher cannot use its fast path (no entry can be written)."""
    return state_pair(ws, [ws.runtime_without_fast_path])


def nongpu_run(ws: Workspace) -> Pair:
    env = ws.env(ws.sim_config("t4"))
    spec = ws.base_spec()
    return Pair(a=lambda: fresh_run(ws, spec, env, True, overlay=False),
                b=lambda: fresh_run(ws, spec, env, False, overlay=False))


def gpu_run_sim(ws: Workspace) -> Pair:
    env = ws.env(ws.sim_config("t4"))
    spec = ws.base_spec(env=[GPU0])
    baseline = with_noop_hook(rewritten_by_shim(ws, spec, "t4"), ws.hook)
    return Pair(a=lambda: fresh_run(ws, spec, env, True),
                b=lambda: fresh_run(ws, baseline, env, False))


def mig_all_vs_one(ws: Workspace) -> Pair:
    env = ws.env(ws.sim_config("dgx-a100-mig"))
    every = ws.base_spec(env=["NVIDIA_VISIBLE_DEVICES=all"])
    one = ws.base_spec(env=[GPU0])
    return Pair(a=lambda: fresh_run(ws, every, env, True),
                b=lambda: fresh_run(ws, one, env, True))


def padded(spec: dict[str, Any], count: int) -> dict[str, Any]:
    """``spec`` with ``count`` more env entries and ``count`` more bind mounts."""
    spec = json.loads(json.dumps(spec))
    spec["process"]["env"] += [f"BENCH_VAR_{i}=value-{i}" for i in range(count)]
    spec["mounts"] += [{"destination": f"/mnt/bench-{i}", "type": "bind", "source": "/tmp",
                        "options": ["rbind", "ro"]} for i in range(count)]
    return spec


def entries_scale(ws: Workspace) -> Pair:
    """The shim's create path alone (low-level runtime: a no-op), so that runc's own cost of
    5 000 mounts does not hide ours."""
    env = ws.env(ws.sim_config("t4", runtimes=[NOOP]))
    spec = ws.base_spec(env=[GPU0])
    big, small = ws.bundle(padded(spec, 5000)), ws.bundle(padded(spec, 10))
    pristine = {b.path: b.config.read_bytes() for b in (big, small)}

    def create(bundle: BundleDir) -> float:
        bundle.config.write_bytes(pristine[bundle.path])
        return ws.timed(ws.shim("create", "--bundle", str(bundle.path), ws.next_id("pad")), env)

    def close() -> None:
        big.remove()
        small.remove()

    return Pair(a=lambda: create(big), b=lambda: create(small), close=close)


STARTS = 32


def concurrency(ws: Workspace) -> Pair:
    env = ws.env(ws.sim_config("t4"))
    spec = ws.base_spec(env=[GPU0])

    def batch(concurrent: bool) -> float:
        with ws.bundles(spec, STARTS, overlay=True) as made:
            argvs = [ws.shim("run", "--bundle", str(b.path), ws.next_id("conc")) for b in made]
            return ws.timed_all(argvs, env, concurrent)

    return Pair(a=lambda: batch(True), b=lambda: batch(False))


# -- memory -----------------------------------------------------------------------------------


def shim_gpu_create_rss(ws: Workspace) -> int:
    """The shim's create path for a GPU container; the low-level runtime is /bin/true, so the
    high-water mark is the shim's own Python process, not runc's. Each run gets a new config
    file, so it also parses YAML and validates the schema: the worst case."""
    env = ws.env(ws.sim_config("t4", runtimes=[NOOP]))
    bundle = ws.bundle(ws.base_spec(env=[GPU0]))
    try:
        return ws.max_rss(ws.shim("create", "--bundle", str(bundle.path), ws.next_id("rss")),
                          env)
    finally:
        bundle.remove()


def hook_rss(ws: Workspace) -> int:
    """The hook during a real GPU start, run under bench/rss_probe.py, which waits for it with
    wait4 and records its peak resident set."""
    out = ws.root / "rss"
    out.mkdir(exist_ok=True)
    for old in out.glob("*"):
        old.unlink()
    probe = ["-I", "-S", str(REPO / "bench" / "rss_probe.py"), str(out), ws.hook]
    env = ws.env(ws.sim_config("t4", hook={"path": ws.python, "args": [ws.python, *probe]}))
    fresh_run(ws, ws.base_spec(env=[GPU0]), env, True)
    values = [int(p.read_text()) for p in Path(out).glob("*.rss")]
    if not values:
        raise RuntimeError("the hook probe recorded nothing: did the hook run?")
    return max(values)


CASES: tuple[Case, ...] = (
    Case("state", "pass-through: `state ID`", "gpu-container-runtime", "runc", 1.6, 150, 40,
         passthrough_state),
    Case("state-python", "pass-through without the fast path (Python)",
         "gpu-container-runtime", "runc", None, 40, 12, passthrough_state_python),
    Case("run", "non-GPU start: `run` busybox /bin/true", "gpu-container-runtime", "runc", 1.4,
         40, 12, nongpu_run),
    Case("gpu", "GPU start, simulated t4, 1 GPU", "shim + hook",
         "runc, devices by hand, no-op hook", 2.5, 20, 6, gpu_run_sim),
    Case("mig-all", "GPU start, dgx-a100-mig: `all` vs GPU 0", "all", "one GPU", 1.2, 12, 4,
         mig_all_vs_one),
    Case("entries", "shim create path: 5 000 env + 5 000 mounts vs 10", "5 000 each",
         "10 each", 1.3, 20, 6, entries_scale),
    Case("concurrency", f"{STARTS} GPU starts (wall time)", "all at once", "one after another",
         0.7, 3, 1, concurrency),
)

MEMORY: tuple[MemoryCase, ...] = (
    MemoryCase("rss-shim", "peak RSS: shim, GPU create, config just changed (YAML + schema)",
               40 * MIB, 5, shim_gpu_create_rss),
    MemoryCase("rss-hook", "peak RSS: hook, GPU start", 40 * MIB, 5, hook_rss),
)
