"""Rows against a peer: NVIDIA Container Toolkit's nvidia-container-runtime in jit-cdi mode
(``bench/run --peer PATH``), on the same simulated host (dgx-a100-mig, entered with
``gpu-ctk simulate run``'s view so that both tools see it at the real paths) and the same work.

NCT edits the spec only on ``create``, so the GPU rows time create + start + delete, the calls
engines make. Its nvidia-cdi-hook is found next to PATH.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from cases import Case, Pair, run_once
from workspace import NOOP, SAFE_PATH, BundleDir, CommandFailed, Workspace, one_line

TOPOLOGY = "dgx-a100-mig"
GPU2 = "NVIDIA_VISIBLE_DEVICES=2"
ALL = "NVIDIA_VISIBLE_DEVICES=all"
MIG0 = "NVIDIA_VISIBLE_DEVICES=0:0"


class Peer:
    """The peer runtime, its config files (runc / a no-op low-level runtime) and its env."""

    def __init__(self, ws: Workspace, runtime: Path) -> None:
        self.ws = ws
        self.runtime = str(runtime)
        self.hook = runtime.parent / "nvidia-cdi-hook"
        if not self.hook.is_file():
            raise RuntimeError(f"{self.hook}: no nvidia-cdi-hook next to the peer runtime")

    def config(self, low_level: str) -> Path:
        path = self.ws.root / "configs" / f"nct-{Path(low_level).name}.toml"
        path.write_text(nct_config(low_level, str(self.hook)), encoding="utf-8")
        return path

    def env(self, low_level: str = "runc") -> dict[str, str]:
        return {"PATH": SAFE_PATH, "NVIDIA_CTK_CONFIG_FILE_PATH": str(self.config(low_level))}

    def argv(self, *args: str) -> list[str]:
        return [self.runtime, "--root", str(self.ws.state_root), *args]


def nct_config(low_level: str, cdi_hook: str) -> str:
    """NCT's config.toml for jit-cdi mode on the host this process sees (root /)."""
    return (f'[nvidia-container-cli]\nroot = "/"\n\n'
            f'[nvidia-container-runtime]\nmode = "jit-cdi"\nruntimes = ["{low_level}"]\n'
            f'log-level = "info"\ndebug = "/dev/null"\n\n'
            f'[nvidia-ctk]\npath = "{cdi_hook}"\n')


def timed_create(ws: Workspace, argv: Sequence[str], env: dict[str, str]) -> float:
    """``ws.timed`` for ``create``: the container's init keeps its stdio open until it
    exits, so stderr goes to a file instead of a pipe that would never reach EOF."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, env=env, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            err.seek(0)
            raise CommandFailed(f"{' '.join(argv[:4])} ...: exit {done.returncode}: "
                                + one_line(err.read().decode(errors="replace")))
    return elapsed


def lifecycle(ws: Workspace, prefix: Sequence[str], spec: dict[str, Any],
              env: dict[str, str]) -> float:
    """create + start + delete of one container from a fresh overlay bundle."""
    bundle = ws.bundle(spec, overlay=True)
    cid = ws.next_id("life")
    try:
        return (timed_create(ws, [*prefix, "create", "--bundle", str(bundle.path), cid], env)
                + ws.timed([*prefix, "start", cid], env)
                + ws.timed([*prefix, "delete", "--force", cid], env))
    finally:
        subprocess.run(ws.runc("delete", "--force", cid), capture_output=True, check=False)
        bundle.remove()


def our_config(ws: Workspace, mode: str, **overrides: Any) -> Path:
    """Our configuration for the peer host in ``mode`` (hook or spec)."""
    return ws.sim_config(TOPOLOGY, mode=mode, **overrides)


def gpu_pair(ws: Workspace, peer: Peer, request: str, mode: str = "hook") -> Pair:
    ours = ws.env(our_config(ws, mode))
    theirs = peer.env()
    spec = ws.base_spec(env=[request])
    return Pair(a=lambda: lifecycle(ws, ws.shim(), spec, ours),
                b=lambda: lifecycle(ws, peer.argv(), spec, theirs))


def wrapper_pair(ws: Workspace, peer: Peer, mode: str = "hook") -> Pair:
    """``create`` of a GPU 2 container with the low-level runtime replaced by /bin/true: the
    wrapper's own work (config, discovery, spec edit; in spec mode also the readiness wait and
    the driver files) and nothing else."""
    ours = ws.env(our_config(ws, mode, runtimes=[NOOP]))
    theirs = peer.env(NOOP)
    spec = ws.base_spec(env=[GPU2])
    bundle = ws.bundle(spec)
    pristine = bundle.config.read_bytes()

    def create(prefix: Sequence[str], env: dict[str, str]) -> float:
        bundle.config.write_bytes(pristine)
        return timed_create(ws, [*prefix, "create", "--bundle", str(bundle.path),
                                 ws.next_id("wrap")], env)

    return Pair(a=lambda: create(ws.shim(), ours), b=lambda: create(peer.argv(), theirs),
                close=bundle.remove)


def nongpu_pair(ws: Workspace, peer: Peer) -> Pair:
    ours = ws.env(ws.sim_config(TOPOLOGY))
    theirs = peer.env()
    spec = ws.base_spec()
    return Pair(a=lambda: lifecycle(ws, ws.shim(), spec, ours),
                b=lambda: lifecycle(ws, peer.argv(), spec, theirs))


def state_pair(ws: Workspace, peer: Peer) -> Pair:
    ours = ws.env(ws.sim_config(TOPOLOGY))
    theirs = peer.env()
    bundle = ws.bundle(ws.base_spec(["/bin/sleep", "1000000"]))
    cid = ws.next_id("pstate")
    run_once(ws, ws.runc("create", "--bundle", str(bundle.path), cid), ours)
    ws.timed(ws.shim("state", cid), ours)  # writes the launcher's fast-path entry

    def close() -> None:
        subprocess.run(ws.runc("delete", "--force", cid), capture_output=True, check=False)
        bundle.remove()

    return Pair(a=lambda: ws.timed(ws.shim("state", cid), ours),
                b=lambda: ws.timed(peer.argv("state", cid), theirs), close=close)


def edited_spec(ws: Workspace, prefix: Sequence[str], spec: dict[str, Any],
                env: dict[str, str]) -> dict[str, Any]:
    """The config.json a wrapper leaves for ``spec`` (its low-level runtime a no-op)."""
    bundle: BundleDir = ws.bundle(spec)
    try:
        run_once(ws, [*prefix, "create", "--bundle", str(bundle.path), ws.next_id("edit")], env)
        edited: dict[str, Any] = json.loads(bundle.config.read_text())
    finally:
        bundle.remove()
    return edited


def without_hooks(spec: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """``spec`` with every hook whose path is in ``paths`` removed (the floor runs none)."""
    hooks = {stage: [entry for entry in entries if entry.get("path") not in paths]
             for stage, entries in spec.get("hooks", {}).items()}
    return {**spec, "hooks": {stage: entries for stage, entries in hooks.items() if entries}}


def floor_pair(ws: Workspace, peer: Peer, mode: str = "hook") -> Pair:
    """runc alone on each wrapper's GPU 2 spec with the wrapper's hooks removed: what is left
    of each GPU start when the wrapper and its hooks cost nothing (ours in ``mode``: in spec
    mode runc also makes the driver mounts)."""
    spec = ws.base_spec(env=[GPU2])
    ours = without_hooks(edited_spec(ws, ws.shim(), spec,
                                     ws.env(our_config(ws, mode, runtimes=[NOOP]))),
                         [ws.hook, ws.spec_hook])
    theirs = without_hooks(edited_spec(ws, peer.argv(), spec, peer.env(NOOP)),
                           [str(peer.hook)])
    env = ws.env()
    return Pair(a=lambda: lifecycle(ws, ws.runc(), ours, env),
                b=lambda: lifecycle(ws, ws.runc(), theirs, env))


def cases(runtime: Path) -> tuple[Case, ...]:
    """The peer rows; each ``prepare`` builds its Peer (a missing hook fails that row only)."""
    ours, nct = "gpu-container-runtime", "NCT jit-cdi"

    def row(key: str, title: str, make: Any, rounds: int, quick: int, a: str = ours,
            b: str = nct, target: Optional[float] = None) -> Case:
        return Case(key, title, a, b, target, rounds, quick,
                    lambda ws: make(ws, Peer(ws, runtime)))

    # Targets from issue 18: spec mode at most NCT's time, hook mode 1.5x, the wrapper alone 3x.
    return (
        row("peer-gpu-spec", "vs NCT: GPU create+start+delete, GPU 2, spec mode",
            lambda ws, p: gpu_pair(ws, p, GPU2, "spec"), 20, 6, target=1.0),
        row("peer-gpu", "vs NCT: GPU create+start+delete, GPU 2, hook mode",
            lambda ws, p: gpu_pair(ws, p, GPU2), 20, 6, target=1.5),
        row("peer-all-spec", "vs NCT: GPU create+start+delete, `all` (8 GPUs, 9 MIG), spec mode",
            lambda ws, p: gpu_pair(ws, p, ALL, "spec"), 12, 4),
        row("peer-all", "vs NCT: GPU create+start+delete, `all` (8 GPUs, 9 MIG), hook mode",
            lambda ws, p: gpu_pair(ws, p, ALL), 12, 4),
        row("peer-mig-spec", "vs NCT: GPU create+start+delete, MIG device 0:0, spec mode",
            lambda ws, p: gpu_pair(ws, p, MIG0, "spec"), 20, 6),
        row("peer-mig", "vs NCT: GPU create+start+delete, MIG device 0:0, hook mode",
            lambda ws, p: gpu_pair(ws, p, MIG0), 20, 6),
        row("peer-wrapper-spec",
            "vs NCT: wrapper alone, GPU 2 `create`, low-level /bin/true, spec mode",
            lambda ws, p: wrapper_pair(ws, p, "spec"), 30, 8, target=3.0),
        row("peer-wrapper",
            "vs NCT: wrapper alone, GPU 2 `create`, low-level /bin/true, hook mode",
            wrapper_pair, 30, 8, target=3.0),
        row("peer-run", "vs NCT: non-GPU create+start+delete", nongpu_pair, 20, 6),
        row("peer-state", "vs NCT: `state ID`", state_pair, 60, 20),
        row("peer-floor-spec",
            "runc floor: GPU 2 create+start+delete, each tool's spec, no hooks, spec mode",
            lambda ws, p: floor_pair(ws, p, "spec"), 20, 6, a="runc, our spec",
            b="runc, NCT's spec"),
        row("peer-floor", "runc floor: GPU 2 create+start+delete, each tool's spec, no hooks",
            floor_pair, 20, 6, a="runc, our spec", b="runc, NCT's spec"),
    )
