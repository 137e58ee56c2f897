"""The one reader of a bundle's config.json (the shim and the hook both use it), and the rootfs
it points at.

Read-only and bounded: config.json is as untrusted as the image that shaped it. What it returns is
runc's reading of the file (gpu_core.oci_spec: keys folded as Go folds them, repeated keys merged as
Go merges them, one canonical spelling per key), so every check sees what runc will act on. The
shim's atomic writer is runtime_shim/bundle.py.
"""

import os
import stat
from collections.abc import Mapping
from typing import Any, NamedTuple

from gpu_core import oci_spec, strict_json
from gpu_core.errors import ShimError, one_line

STAGE = "config.json"
MAX_SPEC_BYTES = 16 * 1024 * 1024
"""Largest config.json we accept; real ones are kilobytes, so more is an attack or a bug."""


class SpecFile(NamedTuple):
    """A parsed config.json with the stat of the file it came from (mode/owner for a rewrite).
    A NamedTuple, not a dataclass: the spec hook reads config.json on every spec-mode start and
    importing dataclasses (and inspect with it) would be most of its import time."""

    path: str
    spec: dict[str, Any]
    mode: int
    uid: int
    gid: int


def parse_spec(data: bytes, path: str = "config.json") -> dict[str, Any]:
    """Parse config.json bytes into runc's view of them (gpu_core.oci_spec.normalise), unknown
    fields preserved; raise ShimError ``config.json: <path>: <what>``."""
    try:
        document = strict_json.loads(data, duplicates=True)
    except strict_json.StrictJsonError as exc:
        raise ShimError(STAGE, f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise ShimError(STAGE, f"{path}: expected a JSON object, got {type(document).__name__}")
    try:
        return oci_spec.normalise(document)
    except oci_spec.SpecError as exc:  # names the field, as the request parser's errors do
        raise ShimError(STAGE, one_line(str(exc), 300)) from None


def load_spec_file(bundle: str, limit: int = MAX_SPEC_BYTES) -> SpecFile:
    """Read ``<bundle>/config.json``: no symlink followed, a regular file only (O_NONBLOCK, so a
    FIFO in its place cannot hang the engine's create or the hook), at most ``limit`` bytes."""
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ShimError(STAGE, one_line(f"{path}: {exc.strerror or exc}")) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ShimError(STAGE, f"{path}: not a regular file")
        if info.st_size > limit:
            raise ShimError(STAGE, f"{path}: {info.st_size} bytes exceeds the {limit} byte limit")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ShimError(STAGE, f"{path}: exceeds the {limit} byte limit")
    return SpecFile(path=path, spec=parse_spec(data, path), mode=info.st_mode & 0o7777,
                    uid=info.st_uid, gid=info.st_gid)


def read_spec(bundle: str, limit: int = MAX_SPEC_BYTES) -> dict[str, Any]:
    """The parsed ``<bundle>/config.json``; raise ShimError ``config.json: …``."""
    return load_spec_file(bundle, limit).spec


def rootfs_path(spec: Mapping[str, Any], bundle: str) -> str:
    """The host path of the container's root as runc computes it: ``root.path`` of the parsed
    spec, relative to the bundle unless absolute, cleaned as text (``rootfs/../x`` is ``x``
    whatever ``rootfs`` is; runc refuses a rootfs whose clean path has a symlink in it)."""
    full = oci_spec.rootfs(spec, bundle)
    if full is None:
        raise ShimError(STAGE, "root.path: expected a non-empty string")
    if full == "/":
        # libnvidia-container refuses it too: mounting the driver over the host's own root.
        raise ShimError(STAGE, "root.path: the host's / cannot be a container rootfs")
    return full
