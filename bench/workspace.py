"""Everything the benchmark cases run against, in one private directory: the installed
launchers, a busybox image, simulated GPU hosts with their configs, bundles (with a fresh
overlay per GPU container, as engines give), a private runc state root, and timed runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

import containers  # noqa: E402 - tests/support is put on sys.path just above

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOOP = "/bin/true"


class CommandFailed(Exception):
    """A measured command exited non-zero: its time would measure an error path."""


def one_line(text: str, limit: int = 2000) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class BundleDir:
    """One bundle; ``mounted`` is its overlay rootfs, undone by ``remove``."""

    path: Path
    mounted: Optional[Path] = None

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    def remove(self) -> None:
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class Workspace:
    """The private directory of one benchmark run."""

    root: Path
    python: str = sys.executable
    counter: int = 0
    hosts: dict[str, Path] = field(default_factory=dict)

    # -- layout ---------------------------------------------------------------------------

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def runtime(self) -> str:
        """The shim as packages install it: the shell launcher."""
        return str(self.bin / "gpu-container-runtime")

    @property
    def runtime_without_fast_path(self) -> str:
        """The launcher with a state directory that cannot exist: every call starts Python."""
        return str(self.bin / "gpu-container-runtime-python")

    @property
    def hook(self) -> str:
        return str(self.bin / "gpu-container-hook")

    @property
    def spec_hook(self) -> str:
        """Spec mode's lean hook, started like the hook: ``python -IS`` with a fixed path."""
        return str(self.bin / "gpu-container-spec-hook")

    @property
    def state_root(self) -> Path:
        return self.root / "runc-root"

    @property
    def image(self) -> Path:
        return self.root / "image"

    @property
    def fastpath_dir(self) -> Path:
        return self.root / "fastpath"

    def setup(self) -> None:
        from runtime_shim import launcher

        for sub in (self.bin, self.state_root, self.root / "bundles", self.root / "configs"):
            sub.mkdir(parents=True, exist_ok=True)
        launcher.install("runtime", self.runtime, self.python,
                         state_dir=str(self.fastpath_dir))
        launcher.install("runtime", self.runtime_without_fast_path, self.python,
                         state_dir="/dev/null/fastpath")
        launcher.install("hook", self.hook, self.python)
        spec_hook = Path(self.spec_hook)
        spec_hook.write_text(
            f"#!{self.python} -IS\n# gpu-container-spec-hook for the benchmark, written like "
            "runtime_shim.launcher's hook: isolated, no site.\n"
            + launcher.entry_code(launcher.default_paths(), "spec_hook.main") + "\n",
            encoding="utf-8")
        spec_hook.chmod(0o755)
        containers.build_busybox_image(self.image)

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"bench-{prefix}-{self.counter}-{uuid.uuid4().hex[:6]}"

    # -- configuration --------------------------------------------------------------------

    def sim_config(self, topology: str, **overrides: Any) -> Path:
        """A config for the simulated ``topology`` with our installed hooks and a log file,
        plus ``overrides`` (top-level sections replaced); ``mode="spec"`` runs spec mode."""
        import yaml

        from simulator.testing import build_host

        if topology not in self.hosts:
            self.hosts[topology] = build_host(topology, self.root / "sim" / topology).config_path
        document = yaml.safe_load(self.hosts[topology].read_text(encoding="utf-8"))
        document["hook"] = {"path": self.hook, "args": []}
        document["spec"] = {"hook_path": self.spec_hook}
        document["log"] = {"file": str(self.root / "shim.log")}
        document.update(overrides)
        name = f"{topology}-{uuid.uuid4().hex[:8]}.yaml"
        path = self.root / "configs" / name
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path

    def env(self, config: Optional[Path] = None) -> dict[str, str]:
        env = {"PATH": SAFE_PATH}
        if config is not None:
            env["GPU_CONTAINER_SHIM_CONFIG"] = str(config)
        return env

    # -- bundles --------------------------------------------------------------------------

    def base_spec(self, args: Sequence[str] = (NOOP,), env: Sequence[str] = ()) -> dict[str, Any]:
        """runc's default spec running ``args`` in the busybox image."""
        scratch = self.root / "bundles" / f"spec-{uuid.uuid4().hex[:8]}"
        scratch.mkdir()
        subprocess.run(["runc", "spec", "--bundle", str(scratch)], check=True)
        spec: dict[str, Any] = json.loads((scratch / "config.json").read_text())
        shutil.rmtree(scratch)
        spec["root"] = {"path": str(self.image), "readonly": True}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = list(args)
        spec["process"]["env"] = [*spec["process"]["env"], *env]
        return spec

    def bundle(self, spec: dict[str, Any], overlay: bool = False) -> BundleDir:
        """A bundle holding ``spec``; with ``overlay`` its rootfs is a fresh writable overlay
        over the image, as engines give every container."""
        path = self.root / "bundles" / uuid.uuid4().hex[:12]
        path.mkdir()
        result = BundleDir(path)
        spec = json.loads(json.dumps(spec))
        if overlay:
            rootfs, upper, work = path / "rootfs", path / "upper", path / "work"
            for d in (rootfs, upper, work):
                d.mkdir()
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={self.image},upperdir={upper},workdir={work}",
                            str(rootfs)], check=True)
            result.mounted = rootfs
            spec["root"] = {"path": str(rootfs), "readonly": False}
        result.config.write_text(json.dumps(spec, indent=2))
        return result

    @contextlib.contextmanager
    def bundles(self, spec: dict[str, Any], count: int, overlay: bool) -> Iterator[list[BundleDir]]:
        made = [self.bundle(spec, overlay) for _ in range(count)]
        try:
            yield made
        finally:
            for bundle in made:
                bundle.remove()

    # -- commands -------------------------------------------------------------------------

    def runc(self, *args: str) -> list[str]:
        return ["runc", "--root", str(self.state_root), *args]

    def shim(self, *args: str) -> list[str]:
        return [self.runtime, "--root", str(self.state_root), *args]

    def timed(self, argv: Sequence[str], env: dict[str, str]) -> float:
        """Seconds from spawn to exit; a non-zero exit raises CommandFailed."""
        start = time.perf_counter()
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise CommandFailed(f"{' '.join(argv[:4])} ...: exit {done.returncode}: "
                                + one_line(done.stderr.decode(errors="replace")))
        return elapsed

    def timed_all(self, argvs: Sequence[Sequence[str]], env: dict[str, str],
                  concurrent: bool) -> float:
        """Wall time of running every argv, all at once or one after another."""
        start = time.perf_counter()
        if not concurrent:
            for argv in argvs:
                self.timed(argv, env)
            return time.perf_counter() - start
        procs = [subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for argv in argvs]
        errors = []
        for proc, argv in zip(procs, argvs):
            _, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(f"{' '.join(argv[:4])} ...: exit {proc.returncode}: "
                              + one_line(err.decode(errors="replace")))
        elapsed = time.perf_counter() - start
        if errors:
            raise CommandFailed(f"{len(errors)} of {len(argvs)} failed; first: {errors[0]}")
        return elapsed

    def max_rss(self, argv: Sequence[str], env: dict[str, str]) -> int:
        """Peak resident set (bytes) of the process started with ``argv`` and every image it
        execs (the kernel keeps the high-water mark across exec), from wait4."""
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise CommandFailed(f"{' '.join(argv[:4])} ...: exit {proc.returncode}: "
                                + one_line(err.decode(errors="replace")))
        return int(usage.ru_maxrss) * 1024

    def cleanup(self) -> None:
        listing = subprocess.run(self.runc("list", "-q"), capture_output=True, text=True,
                                 check=False).stdout.split()
        for cid in listing:
            subprocess.run(self.runc("delete", "--force", cid), capture_output=True, check=False)
        for bundle_dir in (self.root / "bundles").glob("*"):
            rootfs = bundle_dir / "rootfs"
            if rootfs.is_mount():
                subprocess.run(["umount", "-l", str(rootfs)], check=False)
        # The shim cached each configuration this run validated; those files go with the
        # workspace, so their cache entries (and any whose file is already gone) go too.
        from session_cleanup import remove_session_cache_entries

        from gpu_core.config import CACHE_DIR

        remove_session_cache_entries(Path(CACHE_DIR), set(), [self.root])
