"""Compiling the simulated host's C code: finding the compiler, running it, and a content-keyed
cache so that a topology's libraries are compiled once and copied into each build.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Callable, Optional, Union

from simulator.errors import SimulatorError, one_line

CSRC = Path(__file__).resolve().parent / "csrc"
CACHE_ENV = "GPU_CTK_SIM_CACHE"
COMPILER_ENV = "CC"
CFLAGS = ("-shared", "-fPIC", "-O1", "-Wall", "-fvisibility=hidden")

KeyPart = Union[str, bytes, Path]
"""One input of a cache key: text, bytes, or a file whose contents count."""


def default_cache_dir(environ: Optional[dict[str, str]] = None) -> Path:
    """Where compiled libraries are kept between runs: $GPU_CTK_SIM_CACHE, else the user's
    cache directory."""
    env = dict(os.environ) if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else \
        Path.home() / ".cache"
    return base / "gpu-container-shim" / "simulator"


def find_compiler(name: Optional[str] = None) -> str:
    """The C compiler to run (``name``, else $CC, else gcc) as an absolute path."""
    wanted = name or os.environ.get(COMPILER_ENV) or "gcc"
    found = shutil.which(wanted)
    if found is None:
        raise SimulatorError("simulate", one_line(
            f"C compiler {wanted!r} not found: building the simulated GPU host compiles its "
            f"libraries, so it needs gcc (Debian/Ubuntu: apt-get install gcc)"))
    return os.path.abspath(found)


def compiler_env() -> dict[str, str]:
    """A clean environment for the compiler: only PATH (it finds as and ld there) and C locale."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def run_compiler(cc: str, args: Sequence[str], what: str) -> None:
    """Run ``cc args``; a failure is one error with the compiler's first message lines."""
    try:
        result = subprocess.run([cc, *args], env=compiler_env(), capture_output=True,
                                text=True, check=False)
    except OSError as exc:
        raise SimulatorError("simulate", one_line(f"compiling {what}: {cc}: {exc}")) from None
    if result.returncode != 0:
        raise SimulatorError("simulate", one_line(
            f"compiling {what} failed (exit {result.returncode}): {result.stderr[-1500:]}"))


def compile_shared(cc: str, sources: Sequence[Path], out: Path, soname: str,
                   include_dirs: Sequence[Path] = ()) -> None:
    """Compile ``sources`` into the shared object ``out`` whose DT_SONAME is ``soname``."""
    args = [*CFLAGS, f"-Wl,-soname,{soname}"]
    args += [f"-I{directory}" for directory in include_dirs]
    args += ["-o", str(out), *(str(source) for source in sources)]
    run_compiler(cc, args, soname)


def cache_key(parts: Iterable[KeyPart]) -> str:
    """A digest of every part, in order; files count by name and contents."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            data = part.name.encode() + b"\0" + part.read_bytes()
        elif isinstance(part, str):
            data = part.encode("utf-8")
        else:
            data = part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


def _tree_problem(top: Path) -> Optional[str]:
    """Why the files under ``top`` could have been swapped by someone else (None when not): each
    must be owned by the caller or root and not writable by group or others (links: owner only)."""
    owners = (0, os.geteuid())
    for path in (top, *top.rglob("*")):
        info = path.lstat()
        if info.st_uid not in owners:
            return f"{path} is owned by uid {info.st_uid}"
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022:
            return f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def cache_problem(cache_dir: Path) -> Optional[str]:
    """Why ``cache_dir`` cannot hold libraries a root hook will load (None when it can): it must
    be a real directory of the caller or root that nobody else can write, under directories
    nobody else can swap (gpu_core.private_dirs)."""
    from gpu_core import private_dirs

    try:
        info = cache_dir.lstat()
    except FileNotFoundError:
        return private_dirs.ancestor_problem(str(cache_dir.parent))
    except OSError as exc:
        return f"{cache_dir}: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{cache_dir} is not a directory"
    if info.st_uid not in (0, os.geteuid()):
        return f"{cache_dir} is owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        return f"{cache_dir} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return private_dirs.ancestor_problem(str(cache_dir.parent))


def safe_cache(cache_dir: Path) -> tuple[Path, Optional[str]]:
    """``cache_dir`` (made 0700, parents 0755, whatever the umask) when it can be trusted; else a
    fresh private directory removed at exit, and why ``cache_dir`` was not used: a simulated
    host's libraries are loaded by the root hook, so nobody else may be able to swap them."""
    from gpu_core import private_dirs

    problem = cache_problem(cache_dir)
    if problem is None:
        try:
            if not cache_dir.exists():
                private_dirs.make_parents(str(cache_dir.parent), 0o755)
                private_dirs.make_dir(str(cache_dir), 0o700)
            return cache_dir, None
        except FileExistsError:
            problem = cache_problem(cache_dir)
            if problem is None:
                return cache_dir, None
        except OSError as exc:
            problem = f"{cache_dir}: {exc.strerror or exc}"
    private = Path(tempfile.mkdtemp(prefix="gpu-ctk-sim-cache-"))
    atexit.register(shutil.rmtree, private, True)
    return private, problem


def _tighten(top: Path) -> None:
    """Whatever the umask gave the compiler's outputs, nobody else may write them."""
    for path in (top, *top.rglob("*")):
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022:
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o022)


def cached(cache_dir: Path, key: str, produce: Callable[[Path], None]) -> Path:
    """The cache entry ``key``, produced into a fresh directory on a miss. Entries are complete
    or absent: ``produce`` fills a temporary directory that is renamed into place, so a
    concurrent builder of the same key either wins or uses the winner's entry. An entry that
    someone else could have changed is removed and produced again."""
    entry = cache_dir / key
    if entry.is_dir() and not entry.is_symlink():
        if _tree_problem(entry) is None:
            return entry
        shutil.rmtree(entry, ignore_errors=True)  # never follows links inside
    elif entry.is_symlink():
        entry.unlink()
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    try:
        produce(scratch)
        _tighten(scratch)
        scratch.chmod(0o755)
        os.rename(scratch, entry)
    except OSError:
        if not entry.is_dir():
            raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return entry


def install(data: bytes, target: Path, mode: int = 0o755) -> None:
    """Write ``data`` to ``target`` atomically (a process that mapped the old file keeps it);
    an identical target is left alone. The temporary is made exclusively (mkstemp), and a link
    at ``target`` is replaced, never written through."""
    if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    write_new(data, target, mode)


def write_new(data: bytes, target: Path, mode: int) -> None:
    """Put ``data`` at ``target`` with exactly ``mode``: a fresh exclusive temporary beside it,
    then a rename."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            os.fchmod(stream.fileno(), mode)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
