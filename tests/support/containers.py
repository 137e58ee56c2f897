"""Helpers for end-to-end tests: a busybox image, bundles, and runtimes with private roots.

Importable from any test as ``containers`` (pyproject puts tests/support on sys.path)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

BUSYBOX = "/bin/busybox"
SHIM = str(Path(sys.executable).parent / "gpu-container-runtime")


def build_busybox_image(root: Path) -> Path:
    """A minimal root filesystem: busybox-static and a symlink per applet."""
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "usr/lib/x86_64-linux-gnu",
                "lib", "run", "var"):
        (root / sub).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> a short description of every entry, to prove a tree unchanged."""
    result: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if path.is_symlink():
                desc = "l:" + os.readlink(path)
            elif path.is_file():
                desc = "f:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                desc = f"d:{info.st_mode:o}"
            result[str(path.relative_to(root))] = desc
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Bundle:
    """A bundle directory with config.json helpers; ``overlay`` mounts are undone at teardown."""

    path: Path
    mounts: list[Path] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def spec(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.config_path.read_text())
        return loaded

    def write(self, spec: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(spec, indent=2))

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        spec = self.spec()
        change(spec)
        self.write(spec)



@dataclass
class Runtime:
    """Runs containers through the shim (or a runtime directly) with a private state root."""

    root: Path
    config: Path
    low_level: str = "runc"
    started: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "GPU_CONTAINER_SHIM_CONFIG": str(self.config)}

    def command(self, args: Sequence[str], through_shim: bool = True) -> list[str]:
        binary = SHIM if through_shim else self.low_level
        argv = [binary, "--root", str(self.root), *args]
        if self.low_level == "crun":
            # crun refuses the hybrid cgroup layout: run it where the cgroup2 mount is gone.
            quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
            return ["unshare", "-m", "sh", "-c",
                    f"umount /sys/fs/cgroup/unified 2>/dev/null; exec {quoted}"]
        return argv

    def call(self, args: Sequence[str], through_shim: bool = True, timeout: float = 60,
             **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(args, through_shim), capture_output=True, text=True,
                              env=self.env(), timeout=timeout, check=False, **kwargs)

    def run(self, bundle: Bundle, container_id: str = "", through_shim: bool = True,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``run`` a container to completion and return its output."""
        cid = container_id or f"e2e-{uuid.uuid4().hex[:10]}"
        self.started.append(cid)
        return self.call(["run", "--bundle", str(bundle.path), cid], through_shim, **kwargs)

    def cleanup(self) -> None:
        for cid in self.started:
            self.call(["delete", "--force", cid], through_shim=False)

