"""Start real containers through the shim and runc and show what the shim changed, with the
reason for each decision; at the end, remove what the demo left on the host (its cgroups and
its config-cache entries) and say what to try next."""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from containers import SHIM, build_busybox_image, sha256
from session_cleanup import remove_session_cache_entries

BIN = Path(sys.executable).parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
SLICE = "ai-workload.slice"
CACHE_DIR = Path("/run/gpu-container-shim/config-cache")
NOTE_START = re.compile(r"; (?=(?:mig-lease|devices|hook|policy|numa|cgroup|oom): )")
"""Where the next note begins in our log's ``changes`` field (notes are joined with "; ", and
a note, such as the hook's command line, may hold "; " itself)."""


def title(text: str) -> None:
    print(f"\n=== {text}")


def bundle(work: Path, name: str, image: Path, args: list[str], env: tuple[str, ...] = (),
           annotations: Optional[dict[str, str]] = None, overlay: bool = False) -> Path:
    path = work / name
    path.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(path)], check=True)
    spec = json.loads((path / "config.json").read_text())
    root = str(image)
    if overlay:
        for sub in ("rootfs", "upper", "work"):
            (path / sub).mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={image},upperdir={path / 'upper'},workdir={path / 'work'}",
                        str(path / "rootfs")], check=True)
        root = str(path / "rootfs")
    spec["root"] = {"path": root, "readonly": not overlay}
    spec["process"].update(terminal=False, args=args, env=spec["process"]["env"] + list(env))
    if annotations:
        spec["annotations"] = annotations
    (path / "config.json").write_text(json.dumps(spec, indent=2))
    return path


def decisions(log: Path, cid: str) -> list[str]:
    """The shim's notes for ``cid`` from our log (its ``changes`` field, one note each)."""
    notes: list[str] = []
    if not log.exists():
        return notes
    for line in log.read_text().splitlines():
        if f"id={cid} " not in line or " changes=" not in line:
            continue
        value = line.split(" changes=", 1)[1].split(" duration_ms=", 1)[0]
        text = json.loads(value) if value.startswith('"') else value
        notes = [] if text == "none" else NOTE_START.split(text)
    return notes


def run(work: Path, config: Path, path: Path, cid: str, log: Path) -> None:
    before = json.dumps(json.loads((path / "config.json").read_text()), indent=2).splitlines()
    digest = sha256(path / "config.json")
    env = {"PATH": os.environ["PATH"], "GPU_CONTAINER_SHIM_CONFIG": str(config)}
    print(f"$ gpu-container-runtime --root {work}/state run --bundle {path.name} {cid}")
    result = subprocess.run([SHIM, "--root", str(work / "state"), "run", "--bundle", str(path),
                             cid], capture_output=True, text=True, env=env, check=False)
    for line in result.stdout.splitlines():
        print("  | " + line)
    if result.stderr.strip():
        print("  stderr: " + result.stderr.strip())
    print(f"  exit status {result.returncode}")
    if sha256(path / "config.json") == digest:
        print("  config.json unchanged (sha256 identical)")
    else:
        after = json.dumps(json.loads((path / "config.json").read_text()), indent=2).splitlines()
        print("  config.json changes:")
        for line in difflib.unified_diff(before, after, "before", "after", n=1, lineterm=""):
            print("    " + line)
    notes = decisions(log, cid)
    if notes:
        print("  what the shim decided, and why (from its log):")
        for note in notes:
            print("    - " + note)
    subprocess.run(["runc", "--root", str(work / "state"), "delete", "-f", cid],
                   capture_output=True, check=False)


def slices() -> set[Path]:
    """Every ai-workload.slice cgroup directory now, in each hierarchy (v1 and v2)."""
    found = {CGROUP_ROOT / SLICE} if (CGROUP_ROOT / SLICE).is_dir() else set()
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        if (hierarchy / SLICE).is_dir():
            found.add(hierarchy / SLICE)
    return found


def remove_cgroups(made: set[Path]) -> None:
    """rmdir the cgroups the demo's containers left (runc removes a container's own cgroup on
    delete, not the parent it created); deepest first, and only empty ones: rmdir refuses a
    cgroup that still has processes or children."""
    for top in made:
        below = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                       reverse=True)
        for directory in [*below, top]:
            try:
                directory.rmdir()
            except OSError as exc:
                print(f"demo: could not remove {directory}: {exc.strerror}", file=sys.stderr)


NEXT = """
=== What to try next (as root, in this checkout)
  A simulated host of your own, and its config for every command below:
    .venv/bin/gpu-ctk simulate --topology dgx-a100-mig --into /tmp/sim
    export GPU_CONTAINER_SHIM_CONFIG=/tmp/sim/config.yaml
  doctor: check that host's setup; each problem comes with its fix:
    .venv/bin/gpu-ctk doctor
  plan, with a MIG request: make a bundle, add "NVIDIA_VISIBLE_DEVICES=mig-1g.10gb" to
  process.env in its config.json, and see the lease the shim would take, touching nothing:
    mkdir /tmp/b && runc spec --bundle /tmp/b && $EDITOR /tmp/b/config.json
    .venv/bin/gpu-ctk plan /tmp/b
  a failure: change the request to NVIDIA_VISIBLE_DEVICES=9 and plan again: the one line the
  shim would refuse the container with, naming what this host has; or make the GPUs never
  ready (the hook then names each device and NVML's answer when a container starts):
    .venv/bin/gpu-ctk simulate --into /tmp/sim --fault nvml-not-ready=100000
  leases: what MIG devices containers hold:  .venv/bin/gpu-ctk leases list
"""


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (runc, overlay mounts, device nodes)", file=sys.stderr)
        return 1
    existing = slices()
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-shim-demo-") as tmp:
            work = Path(tmp)
            cached = set(os.listdir(CACHE_DIR)) if CACHE_DIR.is_dir() else set()
            try:
                status = demo(work)
            finally:
                remove_session_cache_entries(CACHE_DIR, cached, [work])
    finally:
        remove_cgroups(slices() - existing)
    if status == 0:
        print(NEXT)
    return status


def demo(work: Path) -> int:
    image = build_busybox_image(work / "image")
    log = work / "shim.log"

    title("1. A plain container: the shim passes it to runc untouched")
    plain = work / "plain.yaml"
    plain.write_text(f"runtimes: [runc]\nlog: {{file: {log}}}\n")
    run(work, plain, bundle(work, "plain", image, ["/bin/echo", "hello from busybox"]),
        "demo-plain", log)

    title("2. Policy guaranteed by annotation and a cgroup parent (cgroupfs driver)")
    policy = work / "policy.yaml"
    policy.write_text(f"runtimes: [runc]\nlog: {{file: {log}}}\n"
                      f"cgroup: {{parent: {SLICE}}}\n")
    run(work, policy, bundle(work, "policy", image,
                             ["/bin/sh", "-c", "grep memory /proc/self/cgroup; "
                              "echo oom_score_adj=$(cat /proc/self/oom_score_adj)"],
                             annotations={"ai.scheduling.policy": "guaranteed"}),
        "demo-policy", log)

    host = work / "sim"
    made = subprocess.run([str(BIN / "gpu-ctk"), "simulate", "--topology", "dgx-a100",
                           "--into", str(host)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        print("  gpu-ctk simulate failed: " + made.stderr.strip())
        return 1
    sim_log = host / "log" / "gpu-container-shim.log"

    title("3. A GPU container on the simulated dgx-a100 host (NVIDIA_VISIBLE_DEVICES=0)")
    gpu = bundle(work, "gpu", image,
                 ["/bin/sh", "-c", "ls -l /dev/nvidia*; ls /usr/lib64; nvidia-smi -L; "
                  "grep -c libcuda /etc/ld.so.cache >/dev/null && echo 'ld cache lists "
                  "libcuda'"], env=("NVIDIA_VISIBLE_DEVICES=0",), overlay=True)
    try:
        run(work, host / "config.yaml", gpu, "demo-gpu", sim_log)
    finally:
        subprocess.run(["umount", "-l", str(gpu / "rootfs")], check=False)
    print(f"  The prestart hook entry above is the development form of /usr/bin/gpu-container-hook"
          f":\n  {sys.executable} running this checkout's hook (the simulated host's config "
          "sets hook.path\n  to it); an installed package injects /usr/bin/gpu-container-hook.")

    title("4. GPU 5 of the dgx-a100 under guaranteed: NUMA node 1 (CPUs 64-127) on this machine")
    numa = bundle(work, "numa", image,
                  ["/bin/sh", "-c", "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status"],
                  env=("NVIDIA_VISIBLE_DEVICES=5",),
                  annotations={"ai.scheduling.policy": "guaranteed"}, overlay=True)
    try:
        run(work, host / "config.yaml", numa, "demo-numa", sim_log)
    finally:
        subprocess.run(["umount", "-l", str(numa / "rootfs")], check=False)

    title("Our log (one line per create)")
    for path in (log, sim_log):
        if path.exists():
            print(path.read_text().rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
