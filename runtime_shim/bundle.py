"""The one place that writes a bundle's config.json (reading is gpu_core/bundle.py's, shared
with the hook).

Reads are size-bounded and give runc's reading of the file (gpu_core.oci_spec: an
attacker-controlled spec must not mean one thing to us and another to runc). What we write is that
reading with our edits, every key in its one canonical spelling, so runc reads exactly the values we
checked and edited, whatever spellings or repeated keys the original had. Writes are atomic
(gpu_core.atomic_file, with the original's mode and owner): a crash leaves either the old or the
complete new file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Optional

from gpu_core.bundle import MAX_SPEC_BYTES, SpecFile, load_spec_file, parse_spec
from gpu_core.errors import ShimError, one_line

__all__ = ["MAX_SPEC_BYTES", "LoadedSpec", "load_spec", "parse_spec", "serialise", "write_atomic",
           "write_spec"]

LoadedSpec = SpecFile
"""What ``load_spec`` returns: the parsed spec and the stat the rewrite keeps."""


def load_spec(bundle: str) -> LoadedSpec:
    """Read ``bundle/config.json`` with the hook's reader (one loader for both)."""
    return load_spec_file(bundle)


def serialise(spec: dict[str, Any]) -> bytes:
    """The bytes we write: compact like containerd's, key order kept."""
    text = json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape (\ud800) that JSON let through
        raise ShimError("config.json", f"string with an unpaired surrogate "
                                       f"{one_line(ascii(exc.object[exc.start:exc.end]), 20)} "
                                       f"cannot be written as UTF-8") from None


def write_atomic(path: str, data: bytes, mode: int = 0o644, uid: Optional[int] = None,
                 gid: Optional[int] = None,
                 before_replace: Optional[Callable[[], None]] = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping mode and owner (gpu_core.atomic_file);
    ``before_replace`` runs once the complete temp file is on disk (tests stop the process
    there)."""
    from gpu_core import atomic_file  # only a create that changes the spec writes

    owner = (uid, gid) if uid is not None and gid is not None else None
    try:
        atomic_file.write(path, data, mode, owner, before_replace=before_replace)
    except atomic_file.DirectorySyncError as exc:  # the new file is in place; whether it
        # survives a crash is not known
        raise ShimError("config.json", f"syncing {exc.filename}: {exc.strerror or exc}") from None
    except OSError as exc:  # ENOSPC, EROFS, EACCES: the old file is untouched
        raise ShimError("config.json", f"writing {path}: {exc.strerror or exc}") from None


def write_spec(loaded: LoadedSpec, spec: dict[str, Any],
               before_replace: Optional[Callable[[], None]] = None) -> None:
    """Write ``spec`` back over the file ``loaded`` came from."""
    write_atomic(loaded.path, serialise(spec), loaded.mode, loaded.uid, loaded.gid,
                 before_replace)
