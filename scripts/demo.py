"""Start real containers through the shim and runc and show what the shim changed."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from containers import SHIM, build_busybox_image, sha256

BIN = Path(sys.executable).parent


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


def run(work: Path, config: Path, path: Path, cid: str) -> None:
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
    subprocess.run(["runc", "--root", str(work / "state"), "delete", "-f", cid],
                   capture_output=True, check=False)


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (runc, overlay mounts, device nodes)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="gpu-shim-demo-") as tmp:
        work = Path(tmp)
        image = build_busybox_image(work / "image")
        log = work / "shim.log"

        title("1. A plain container: the shim passes it to runc untouched")
        plain = work / "plain.yaml"
        plain.write_text(f"runtimes: [runc]\nlog: {{file: {log}}}\n")
        run(work, plain, bundle(work, "plain", image, ["/bin/echo", "hello from busybox"]),
            "demo-plain")

        title("2. Policy by annotation and a cgroup parent (cgroupfs driver)")
        policy = work / "policy.yaml"
        policy.write_text(f"runtimes: [runc]\nlog: {{file: {log}}}\n"
                          "cgroup: {parent: ai-workload.slice}\n")
        run(work, policy, bundle(work, "policy", image,
                                 ["/bin/sh", "-c", "grep memory /proc/self/cgroup; "
                                  "echo oom_score_adj=$(cat /proc/self/oom_score_adj)"],
                                 annotations={"ai.scheduling.policy": "guaranteed"}),
            "demo-policy")

        title("3. A GPU container on the simulated dgx-a100 host (NVIDIA_VISIBLE_DEVICES=0)")
        host = work / "sim"
        made = subprocess.run([str(BIN / "gpu-ctk"), "simulate", "--topology", "dgx-a100",
                               "--into", str(host)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            print("  gpu-ctk simulate failed: " + made.stderr.strip())
            return 1
        gpu = bundle(work, "gpu", image,
                     ["/bin/sh", "-c", "ls -l /dev/nvidia*; ls /usr/lib64; nvidia-smi -L; "
                      "grep -c libcuda /etc/ld.so.cache >/dev/null && echo 'ld cache lists "
                      "libcuda'"], env=("NVIDIA_VISIBLE_DEVICES=0",), overlay=True)
        try:
            run(work, host / "config.yaml", gpu, "demo-gpu")
        finally:
            subprocess.run(["umount", "-l", str(gpu / "rootfs")], check=False)

        title("Our log (one line per create)")
        for path in (log, host / "log" / "gpu-container-shim.log"):
            if path.exists():
                print(path.read_text().rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
