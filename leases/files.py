"""The node-local MIG lease store on disk: its layout, and reading it.

Layout of ``mig.lease_dir`` (root-only, 0700):
- ``<container-id>.json``: that container's ``leases.allocation.Lease``;
- ``.<container-id>.<pid>.tmp``: a write in progress (or left by a writer that was killed);
- ``.lock``: ``flock``-ed by every change (``leases.lock``). The lock covers only the decision
  (read the store, reclaim stale leases, choose devices, write one file): never discovery, never
  the runtime.

The directory is trusted only when it is ours (gpu_core.private_dirs: owned by us, 0700, under
directories nobody else can swap); an allocation moves one that is not aside and makes it again,
every other operation leaves it alone. A ``.json`` file that holds no lease we can trust counts
as held (leases.salvage): leases fail closed.

Writes are atomic (``leases.write``), so a reader sees a lease file whole or not at all. Every
write happens under the lock, so a temp file found by a process that holds the lock was left by
a dead writer and is removed; readers without the lock (``gpu-ctk leases list``) report it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Optional

from gpu_core import private_dirs
from gpu_core.errors import ShimError, one_line
from leases.allocation import STAGE, Lease, LeaseFormatError, check_container_id
from leases.host import HOST
from leases.salvage import Unreadable, salvage

LEASE_SUFFIX = ".json"
TEMP_SUFFIX = ".tmp"
MAX_LEASE_BYTES = 64 * 1024
"""A lease of every MIG device of a large host is a few KiB; more is not ours."""


@dataclass(frozen=True)
class Snapshot:
    """Every lease in the store, and what could not be read as one."""

    leases: tuple[Lease, ...]
    problems: tuple[str, ...] = ()
    """One line per unreadable lease file or leftover temp file."""
    temps: tuple[str, ...] = ()
    """Names of temp files present (writes in progress or left by killed writers)."""
    unreadable: tuple[str, ...] = ()
    """Names of ``.json`` files that hold no lease record."""
    untrusted: tuple[Unreadable, ...] = ()
    """What each of those still holds (leases.salvage): leases fail closed."""


def lease_path(directory: str, container_id: str) -> str:
    return os.path.join(directory, check_container_id(container_id) + LEASE_SUFFIX)


def _temp_writer(name: str) -> Optional[int]:
    """The writer pid in ``.<id>.<pid>.tmp``."""
    stem = name[: -len(TEMP_SUFFIX)]
    _, _, pid = stem.rpartition(".")
    return int(pid) if pid.isdigit() and len(pid) < 10 else None


def read_lease(path: str) -> Lease:
    """One lease file; OSError when unreadable, LeaseFormatError when it is not a lease."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LeaseFormatError("not a regular file")
    with os.fdopen(fd, "rb") as stream:
        data = stream.read(MAX_LEASE_BYTES + 1)
    if len(data) > MAX_LEASE_BYTES:
        raise LeaseFormatError(f"larger than {MAX_LEASE_BYTES} bytes")
    if not data:
        raise LeaseFormatError("empty")
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise LeaseFormatError(f"not JSON: {one_line(str(exc), 120)}") from None
    except RecursionError:
        raise LeaseFormatError("not JSON: nested too deeply") from None
    lease = Lease.from_json(record)
    name = os.path.basename(path)
    if name != lease.container_id + LEASE_SUFFIX:
        raise LeaseFormatError(f"holds container {lease.container_id}, not {name}")
    return lease


def read_salvage(path: str, reason: str) -> Unreadable:
    """What the unreadable lease file ``path`` still holds: its bytes, read as read_lease does
    (never through a symlink, never blocking on a FIFO), go to leases.salvage."""
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return salvage(name, None, reason)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return salvage(name, None, reason)
    with os.fdopen(fd, "rb") as stream:
        data = stream.read(MAX_LEASE_BYTES + 1)
    return salvage(name, data, reason, complete=len(data) <= MAX_LEASE_BYTES)


def check_trusted(directory: str) -> None:
    """A lease directory someone else made or can write is not ours: ``mig: ...`` otherwise."""
    problem = private_dirs.trust_problem(directory)
    if problem is not None:
        raise ShimError(STAGE, one_line(f"lease store {directory} is not trusted: {problem}"))


def read_all(directory: str) -> Snapshot:
    """Read the store without the lock: tolerant of anything a killed writer can leave."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return Snapshot(leases=())
    except OSError as exc:
        raise ShimError(STAGE, f"lease store {directory}: {exc.strerror or exc}") from None
    check_trusted(directory)
    leases: list[Lease] = []
    problems: list[str] = []
    temps: list[str] = []
    untrusted: list[Unreadable] = []
    for name in names:
        if name.endswith(TEMP_SUFFIX):
            temps.append(name)
            writer = _temp_writer(name)
            alive = writer is not None and HOST.process_start(writer) is not None
            state = "in progress" if alive else f"writer pid {writer} gone"
            problems.append(f"incomplete write {name} ({state})")
        elif name.endswith(LEASE_SUFFIX):
            path = os.path.join(directory, name)
            try:
                leases.append(read_lease(path))
            except FileNotFoundError:
                continue  # released between listdir and open
            except (OSError, LeaseFormatError) as exc:
                cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                untrusted.append(read_salvage(path, one_line(cause, 160)))
                problems.append(one_line(f"unreadable lease {name}: {cause}", 200))
    return Snapshot(leases=tuple(leases), problems=tuple(problems), temps=tuple(temps),
                    unreadable=tuple(entry.name for entry in untrusted),
                    untrusted=tuple(untrusted))
