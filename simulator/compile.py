"""Compiling the simulated host's C code: finding the compiler, running it, and a content-keyed
cache so that a topology's libraries are compiled once and copied into each build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Callable, Optional, Union

from hook.errors import ShimError, one_line

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
        raise ShimError("simulate", one_line(
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
        raise ShimError("simulate", one_line(f"compiling {what}: {cc}: {exc}")) from None
    if result.returncode != 0:
        raise ShimError("simulate", one_line(
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


def cached(cache_dir: Path, key: str, produce: Callable[[Path], None]) -> Path:
    """The cache entry ``key``, produced into a fresh directory on a miss. Entries are complete
    or absent: ``produce`` fills a temporary directory that is renamed into place, so a
    concurrent builder of the same key either wins or uses the winner's entry."""
    entry = cache_dir / key
    if entry.is_dir():
        return entry
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    try:
        produce(scratch)
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
    an identical target is left alone."""
    if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, mode)
    os.replace(temporary, target)
