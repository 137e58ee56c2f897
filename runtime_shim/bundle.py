"""The one place that reads and writes a bundle's config.json.

Reads are size-bounded and reject duplicate keys (an attacker-controlled spec must not mean one
thing to us and another to runc). Writes are atomic: temp file in the bundle directory with the
original's mode and owner, fsync, rename, fsync of the directory — a crash leaves either the old
or the complete new file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from hook.errors import ShimError, one_line

MAX_SPEC_BYTES = 16 * 1024 * 1024
"""Largest config.json we accept; real ones are kilobytes, so more is an attack or a bug."""


@dataclass(frozen=True)
class LoadedSpec:
    """A parsed config.json with the stat of the file it came from (for mode/owner on write)."""

    path: str
    spec: dict[str, Any]
    mode: int
    uid: int
    gid: int


def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object hook: a key given twice is an error, not last-one-wins."""
    result = dict(pairs)  # at C speed: this runs for every object of config.json
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ShimError("config.json", f"duplicate key {one_line(key, 80)!r}")
            seen.add(key)
    return result


def reject_constant(name: str) -> Any:
    """``json`` hook for NaN and Infinity: Python accepts them, runc's JSON parser does not."""
    raise ShimError("config.json", f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """``json`` hook for numbers: one that overflows to infinity would be written back as
    ``Infinity``, which runc cannot read."""
    value = float(text)
    if not math.isfinite(value):
        raise ShimError("config.json", f"number {one_line(text, 40)} is out of range")
    return value


def parse_spec(data: bytes, path: str = "config.json") -> dict[str, Any]:
    """Parse config.json bytes into a dict, unknown fields preserved."""
    try:
        spec = json.loads(data, object_pairs_hook=reject_duplicates,
                          parse_constant=reject_constant, parse_float=finite_float)
    except RecursionError:
        raise ShimError("config.json", f"{path}: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ShimError):
            raise
        raise ShimError("config.json", f"{path}: invalid JSON: {one_line(str(exc), 200)}") from None
    if not isinstance(spec, dict):
        raise ShimError("config.json", f"{path}: expected a JSON object, got {type(spec).__name__}")
    return spec


def load_spec(bundle: str) -> LoadedSpec:
    """Read ``bundle/config.json``."""
    path = os.path.join(bundle, "config.json")
    try:
        # O_NONBLOCK: a FIFO in its place must not hang the engine's create (checked below).
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ShimError("config.json", f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ShimError("config.json", f"{path}: not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise ShimError("config.json", f"{path}: {info.st_size} bytes exceeds the "
                                           f"{MAX_SPEC_BYTES} byte limit")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise ShimError("config.json", f"{path}: exceeds the {MAX_SPEC_BYTES} byte limit")
    return LoadedSpec(path=path, spec=parse_spec(data, path), mode=info.st_mode & 0o7777,
                      uid=info.st_uid, gid=info.st_gid)


def serialise(spec: dict[str, Any]) -> bytes:
    """The bytes we write: compact like containerd's, key order kept."""
    text = json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape (\ud800) that JSON let through
        raise ShimError("config.json", f"string with an unpaired surrogate "
                                       f"{one_line(ascii(exc.object[exc.start:exc.end]), 20)} "
                                       f"cannot be written as UTF-8") from None


def create_temp(directory: str, prefix: str) -> tuple[int, str]:
    """A new owner-only file in ``directory`` (what tempfile.mkstemp does, without importing
    tempfile, which pulls in random, shutil and the compression modules on every create)."""
    for _ in range(100):
        path = os.path.join(directory, prefix + os.urandom(6).hex())
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name in {directory}")


def write_atomic(path: str, data: bytes, mode: int = 0o644, uid: Optional[int] = None,
                 gid: Optional[int] = None,
                 before_replace: Optional[Callable[[], None]] = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping mode and owner; ``before_replace`` runs
    once the complete temp file is on disk (tests stop the process there)."""
    directory = os.path.dirname(path) or "."
    try:
        fd, temp = create_temp(directory, "." + os.path.basename(path) + ".")
    except OSError as exc:  # ENOSPC for the inode, EROFS, EACCES: nothing was written yet
        raise ShimError("config.json", f"writing {path}: {exc.strerror or exc}") from None
    try:
        try:
            os.fchmod(fd, mode)
            if uid is not None and gid is not None and (uid, gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, uid, gid)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise ShimError("config.json", f"writing {path}: {exc.strerror or exc}") from None
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:  # the new file is in place; whether it survives a crash is not known
        raise ShimError("config.json", f"syncing {directory}: {exc.strerror or exc}") from None


def write_spec(loaded: LoadedSpec, spec: dict[str, Any],
               before_replace: Optional[Callable[[], None]] = None) -> None:
    """Write ``spec`` back over the file ``loaded`` came from."""
    write_atomic(loaded.path, serialise(spec), loaded.mode, loaded.uid, loaded.gid,
                 before_replace)
