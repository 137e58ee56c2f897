"""Fixtures of the packaging tests: both packages built once per session, and a clean Debian 12
root made with debootstrap, cached outside the repository (a cold debootstrap takes minutes)."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("GPU_CONTAINER_SHIM_TEST_CACHE",
                                "/var/cache/gpu-container-shim-tests"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ROOT_PACKAGES = ("runc", "gcc", "libc6-dev")
"""What the tests use inside the root (the low-level runtime, the simulator's
compiler); never the package's own dependencies, which apt must resolve at install time."""
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

IN_ROOT = r"""#!/bin/sh
# in-root ROOT CMD...: run CMD with ROOT as / of a private mount namespace, with /proc, /sys
# (cgroups included) and /dev inside. The namespace dies with CMD, so nothing stays mounted
# whatever happens; and a process that joins a container's mount namespace (the hook's
# libnvidia-container does) finds ROOT there as / too, which a plain chroot would not give.
set -e
root=$1
shift
exec unshare --mount --propagation private /bin/sh -ec '
root=$1; shift
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
cd "$root"
mkdir -p .host
pivot_root . .host
exec /bin/sh -ec "umount -l /.host; rmdir /.host; exec \"\$@\"" sh "$@"
' sh "$root" "$@"
"""


def load_make_packages() -> ModuleType:
    """packaging/make_packages.py as a module (packaging/ is not a Python package)."""
    name = "gpu_container_shim_make_packages"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "packaging" / "make_packages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_packages() -> ModuleType:
    """The build module behind packaging/build."""
    return load_make_packages()


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory, make_packages: ModuleType
             ) -> dict[str, Path]:
    """packaging/build's two packages, built once: packager -> path."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([str(REPO / "packaging" / "build"), "--out", str(out)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    built = [Path(line) for line in done.stdout.split()]
    return {path.suffix.lstrip("."): path for path in built}


@pytest.fixture(scope="session")
def in_root_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The IN_ROOT runner as an executable file (the installer test's NODE_ENTER uses it)."""
    path = tmp_path_factory.mktemp("in-root") / "in-root"
    path.write_text(IN_ROOT)
    path.chmod(0o755)
    return path


def run_logged(args: Sequence[str], what: str, timeout: float) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): "
                           f"{(done.stdout + done.stderr)[-3000:]}")


def cached_root(deb: Path, runner: Path) -> Path:
    """The tarball of a minbase Debian 12 root with ROOT_PACKAGES, Debian's package lists, and
    the .deb's dependencies downloaded but not installed (so installing resolves them from
    Debian's lists without the network). Built once per machine, under a lock."""
    recipe = "\n".join(["v1", SUITE, MIRROR, *ROOT_PACKAGES])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    tarball = CACHE_DIR / f"debootstrap-{SUITE}-{key}.tar"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.is_file():
            return tarball
        scratch = CACHE_DIR / f".build-{key}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}",
                        SUITE, str(scratch), MIRROR], "debootstrap", 1200)
            shutil.copy2("/etc/resolv.conf", scratch / "etc" / "resolv.conf")
            in_root = [str(runner), str(scratch), "env", "-i", f"PATH={PATH}"]
            run_logged([*in_root, "apt-get", "clean"], "apt-get clean", 120)
            shutil.copy2(deb, scratch / "tmp" / deb.name)
            run_logged([*in_root, "apt-get", "install", "-y", "-q", "--download-only",
                        f"/tmp/{deb.name}"], "prefetching the .deb's dependencies", 600)
            (scratch / "tmp" / deb.name).unlink()
            partial = tarball.with_suffix(".partial")
            run_logged(["tar", "-C", str(scratch), "-cf", str(partial), "."], "tar", 600)
            partial.rename(tarball)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return tarball


@dataclass
class DebianRoot:
    """A fresh Debian 12 root for this session; ``run`` executes a command inside it."""

    path: Path
    runner: Path
    preinstalled: frozenset[str]
    """Packages installed before any test ran (dpkg's view)."""

    def run(self, *args: str, env: Optional[Mapping[str, str]] = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``args`` inside the root with a clean environment (PATH, plus ``env``)."""
        settings = [f"{k}={v}" for k, v in {"PATH": PATH, **(env or {})}.items()]
        return subprocess.run([str(self.runner), str(self.path), "env", "-i", *settings, *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def installed(self) -> frozenset[str]:
        """Names of the packages dpkg has installed now."""
        done = self.run("dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package}\\n")
        assert done.returncode == 0, done.stderr
        return frozenset(line.split()[1] for line in done.stdout.splitlines()
                         if line.startswith("ii "))


@pytest.fixture(scope="session")
def debian_root(tmp_path_factory: pytest.TempPathFactory, packages: dict[str, Path],
                in_root_script: Path) -> Iterator[DebianRoot]:
    """A clean Debian 12 root extracted from the cache; removed at the end of the session."""
    tarball = cached_root(packages["deb"], in_root_script)
    path = tmp_path_factory.mktemp("debian-root")
    try:
        subprocess.run(["tar", "-C", str(path), "-xf", str(tarball)], check=True)
        shutil.copy2("/etc/resolv.conf", path / "etc" / "resolv.conf")
        root = DebianRoot(path, in_root_script, frozenset())
        root.preinstalled = root.installed()
        yield root
    finally:
        shutil.rmtree(path, ignore_errors=True)
