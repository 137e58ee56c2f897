"""The node-local MIG lease store: one directory, one JSON file per holder container.

Layout of ``mig.lease_dir`` (root-only, 0700):
- ``<container-id>.json``: that container's ``leases.allocation.Lease``;
- ``.<container-id>.<pid>.tmp``: a write in progress (or left by a writer that was killed);
- ``.lock``: ``flock``-ed by every change. The lock covers only the decision (read the store,
  reclaim stale leases, choose devices, write one file): never discovery, never the runtime.

The directory is trusted only when it is ours (gpu_core.private_dirs: owned by us, 0700, under
directories nobody else can swap); an allocation moves one that is not aside and makes it again,
every other operation leaves it alone. A ``.json`` file that holds no lease we can trust counts
as held (leases.salvage): leases fail closed.

Writes are atomic (exclusive temp file, fsync, rename, fsync of the directory), so a reader
sees a lease file whole or not at all. Every write happens under the lock, so a temp file found
by a process that holds the lock was left by a dead writer and is removed; readers without the
lock (``gpu-ctk leases list``) report it.

Test-only fault points: with ``GPU_CONTAINER_SHIM_FAULT=<point>:<action>`` in the environment
*and* a configuration that points at a simulated host (``simulation.dir`` set), the shim stops at
``<point>`` (``mig-lease-before-commit``: half the lease written to its temp file, lock held;
``mig-lease-after-commit``: lease committed, config.json not yet written). ``sleep`` waits there
(for a test to SIGKILL it), ``abort`` kills the process with SIGKILL. Neither can do more than
stop the shim, which whoever sets the engine's environment can do anyway; production
configurations (no ``simulation`` section) never read the variable.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Callable, Optional

from gpu_core import atomic_file, private_dirs
from gpu_core.errors import ShimError, one_line
from leases.allocation import (
    STAGE,
    Lease,
    LeaseFormatError,
    Observer,
    check_container_id,
    stale_reason,
)
from leases.salvage import Unreadable, as_held, names_only_its_file, salvage
from leases.salvage import stale as unreadable_stale

LOCK_NAME = ".lock"
LEASE_SUFFIX = ".json"
TEMP_SUFFIX = ".tmp"
MAX_LEASE_BYTES = 64 * 1024
"""A lease of every MIG device of a large host is a few KiB; more is not ours."""
LOCK_TIMEOUT = 10.0
"""Seconds to wait for the lock: holders keep it for milliseconds, so this means a hung one."""

FAULT_ENV = "GPU_CONTAINER_SHIM_FAULT"
FAULT_SLEEP = 60.0
"""How long a ``sleep`` fault point waits for the test that set it to kill the process."""


class HostObserver:
    """Staleness facts from this host: the runtime's state root and ``/proc``."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc

    def runtime_knows(self, runtime_root: str, container_id: str) -> bool:
        # runc keeps <root>/<id>/state.json, crun <root>/<id>/status; both create the directory
        # first and remove it last, so the directory is the earliest and latest sign.
        return os.path.isdir(os.path.join(runtime_root, container_id))

    def process_start(self, pid: int) -> Optional[int]:
        try:
            with open(f"{self.proc}/{pid}/stat", "rb") as stream:
                text = stream.read(4096).decode("ascii", "replace")
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) < 20 or fields[0] in ("Z", "X"):
            return None
        try:
            return int(fields[19])
        except ValueError:
            return None


HOST = HostObserver()


def process_start(pid: int) -> Optional[int]:
    """Start time of ``pid`` on this host, None when it is not running."""
    return HOST.process_start(pid)


# --- fault points (tests only) -------------------------------------------------------------------

def fault_point(name: str, enabled: bool, environ: Optional[Mapping[str, str]] = None) -> None:
    """Stop here when a test asked for it (see the module docstring); a no-op otherwise."""
    if not enabled:
        return
    env = os.environ if environ is None else environ
    for item in env.get(FAULT_ENV, "").split(","):
        point, _, action = item.strip().partition(":")
        if point != name:
            continue
        if action == "abort":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "sleep":
            time.sleep(FAULT_SLEEP)


# --- reading -------------------------------------------------------------------------------------

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


# --- locking and writing -------------------------------------------------------------------------

@contextlib.contextmanager
def locked(directory: str, timeout: float = LOCK_TIMEOUT, create: bool = True
           ) -> Iterator[list[str]]:
    """Hold the store's lock; ``mig: lease store busy`` after ``timeout`` seconds. With
    ``create`` the directory is made ours first (0700 whatever the umask; one someone else made
    or left writable is moved aside: gpu_core.private_dirs), and the notes say what was moved.
    Without it, a directory that is not ours is refused."""
    notes: list[str] = []
    try:
        if create:
            notes = private_dirs.ensure(directory, 0o700, own_root=private_dirs.OWN_ROOT)
        else:
            check_trusted(directory)
    except OSError as exc:
        raise ShimError(STAGE, one_line(f"lease store {directory}: {exc.strerror or exc}")
                        ) from None
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ShimError(STAGE, f"lease store {directory}: lock: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # exactly, whatever the umask
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ShimError(STAGE, f"lease store {directory}: lock: "
                                           f"{exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                raise ShimError(STAGE, f"lease store {directory} busy: its lock was held for "
                                       f"more than {timeout:g}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        yield notes
    finally:
        os.close(fd)  # closing drops the flock


def write_lease(directory: str, lease: Lease, faults: bool = False) -> None:
    """Atomically (re)place ``lease``'s file; the caller holds the lock."""
    target = lease_path(directory, lease.container_id)
    temp = os.path.join(directory, f".{lease.container_id}.{os.getpid()}{TEMP_SUFFIX}")
    data = (json.dumps(lease.to_json(), indent=1, sort_keys=True) + "\n").encode()
    midway = (lambda: fault_point("mig-lease-before-commit", faults)) if faults else None
    try:
        _unlink(directory, os.path.basename(temp))  # whatever is there (a FIFO would block)
        atomic_file.write(target, data, 0o600, temp_name=os.path.basename(temp), midway=midway)
    except OSError as exc:
        raise ShimError(STAGE, f"lease store {directory}: write {os.path.basename(target)}: "
                               f"{exc.strerror or exc}") from None


def _unlink(directory: str, name: str) -> None:
    """Remove ``name`` when it can go; a directory planted at a temp name stays (reported)."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(os.path.join(directory, name))


# --- operations ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reclaimed:
    """A stale lease removed, and why it was stale."""

    lease: Lease
    reason: str


@dataclass(frozen=True)
class Allocation:
    """The committed lease and what the allocation cleaned up on its way."""

    lease: Lease
    reclaimed: tuple[Reclaimed, ...] = ()
    removed_temps: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


Decide = Callable[[Mapping[str, Lease]], Lease]
"""Given the live leases of other containers by id, the lease to commit (or a ShimError)."""


def allocate(directory: str, container_id: str, decide: Decide, *, pid: Optional[int] = None,
             observer: Observer = HOST, faults: bool = False,
             timeout: float = LOCK_TIMEOUT) -> Allocation:
    """Under the lock: drop dead writers' temp files, reclaim stale leases, let ``decide`` pick
    from what live others do not hold, and commit its lease for ``container_id`` (replacing
    one this process, or a dead start of the same id, left). An unreadable lease file counts
    as held (leases.salvage): ``decide`` sees its devices as held by its container, and
    one whose devices cannot be read refuses every allocation while it is there."""
    check_container_id(container_id)
    me = os.getpid() if pid is None else pid
    with locked(directory, timeout) as moved:
        snapshot = read_all(directory)
        for name in snapshot.temps:
            _unlink(directory, name)
        others: dict[str, Lease] = {}
        reclaimed: list[Reclaimed] = []
        for lease in snapshot.leases:
            reason = stale_reason(lease, observer)
            if lease.container_id == container_id:
                _check_own(lease, me, reason, observer)
                if reason is not None:
                    reclaimed.append(Reclaimed(lease, reason))
                continue
            if reason is None:
                others[lease.container_id] = lease
            else:
                _unlink(directory, lease.container_id + LEASE_SUFFIX)
                reclaimed.append(Reclaimed(lease, reason))
        notes = [*(f"lease store: {note}" for note in moved),
                 *(p for p in snapshot.problems if not p.startswith("incomplete write"))]
        for entry in snapshot.untrusted:
            gone = unreadable_stale(entry, observer)
            if gone is not None:
                _unlink(directory, entry.name)
                notes.append(f"removed {entry.name}: its holder is gone ({gone})")
                continue
            try:
                others[f"{entry.container_id} (unreadable)"] = as_held(entry, container_id)
            except ValueError as exc:
                raise ShimError(STAGE, str(exc)) from None
        lease = decide(others)
        if lease.container_id != container_id:
            raise ValueError(f"decide returned a lease for {lease.container_id}")
        write_lease(directory, lease, faults)
    return Allocation(lease=lease, reclaimed=tuple(reclaimed), removed_temps=snapshot.temps,
                      problems=tuple(notes))


def _check_own(lease: Lease, me: int, reason: Optional[str], observer: Observer) -> None:
    """A live lease under our own id is ours to replace only when this process took it."""
    h = lease.holder
    if reason is not None or h.shim_pid == me:
        return
    if h.runtime_root and observer.runtime_knows(h.runtime_root, h.container_id):
        raise ShimError(STAGE, f"container {h.container_id} already exists and holds MIG "
                               f"devices {', '.join(d.uuid for d in lease.devices)}")
    raise ShimError(STAGE, f"another start of container {h.container_id} (pid {h.shim_pid}) "
                           "holds its MIG leases")


DropUnreadable = Callable[[Unreadable], bool]
"""Whether an unreadable lease file of the container being released may go."""


def release(directory: str, container_id: str,
            keep: Optional[Callable[[Lease], bool]] = None,
            drop_unreadable: Optional[DropUnreadable] = names_only_its_file) -> Optional[Lease]:
    """Remove ``container_id``'s lease (unless ``keep`` says otherwise); the removed lease, or
    None when there was none. A missing store is an empty one; one that is not ours
    (gpu_core.private_dirs) is left alone. An unreadable file under this id goes only when
    ``drop_unreadable`` says so: by default when it names no other container (the one it
    belongs to is being destroyed)."""
    path = lease_path(directory, container_id)
    if not os.path.isdir(directory) or not private_dirs.trusted(directory):
        return None
    with locked(directory, create=False):
        try:
            lease = read_lease(path)
        except FileNotFoundError:
            return None
        except (OSError, LeaseFormatError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if drop_unreadable is not None and drop_unreadable(read_salvage(path, cause)):
                _unlink(directory, os.path.basename(path))
            return None
        if keep is not None and keep(lease):
            return None
        _unlink(directory, os.path.basename(path))
        return lease


def release_if_stale(directory: str, container_id: str,
                     observer: Observer = HOST) -> Optional[Lease]:
    """After ``delete``: release the lease when the runtime no longer knows the container (a
    delete that failed, or a new start of the same id, keeps it)."""
    return release(directory, container_id,
                   keep=lambda lease: stale_reason(lease, observer) is None,
                   drop_unreadable=lambda entry: names_only_its_file(entry) and (
                       entry.holder is None or unreadable_stale(entry, observer) is not None))


def release_if_mine(directory: str, container_id: str, pid: Optional[int] = None
                    ) -> Optional[Lease]:
    """After a failed create: release the lease this process took, and nothing else (an
    unreadable file is never one this process wrote)."""
    me = os.getpid() if pid is None else pid
    if not os.path.exists(lease_path(directory, container_id)):
        return None
    return release(directory, container_id, keep=lambda lease: lease.holder.shim_pid != me,
                   drop_unreadable=None)


def record_init(directory: str, container_id: str, pid: int,
                observer: Observer = HOST) -> Optional[Lease]:
    """At prestart: note the container's init process in its lease (one more sign of life)."""
    path = lease_path(directory, container_id)
    if not os.path.exists(path):
        return None
    with locked(directory, create=False):
        try:
            lease = read_lease(path)
        except (OSError, LeaseFormatError):
            return None
        updated = replace(lease, holder=replace(lease.holder, init_pid=pid,
                                                init_start=observer.process_start(pid)))
        write_lease(directory, updated)
        return updated


@dataclass(frozen=True)
class Collected:
    """What ``gc`` removed, and what it kept although it is no lease."""

    reclaimed: tuple[Reclaimed, ...]
    removed: tuple[str, ...]
    """Temp files of dead writers and unreadable lease files whose holder is gone."""
    kept: tuple[str, ...] = ()
    """One line per unreadable lease file kept (its holder may be alive) or leftover that
    could not be removed."""


def _remove(directory: str, name: str) -> Optional[str]:
    """Unlink ``name`` (a symlink itself, never its target); why not, or None."""
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{name}: {exc.strerror or exc}"
    return None


def gc(directory: str, observer: Observer = HOST) -> Collected:
    """Reclaim every stale lease, leftover temp file, and unreadable lease file whose holder is
    provably gone; keep (and say why) every unreadable file whose holder may be alive."""
    if not os.path.isdir(directory):
        return Collected(reclaimed=(), removed=())
    with locked(directory, create=False):
        snapshot = read_all(directory)
        reclaimed = []
        for lease in snapshot.leases:
            reason = stale_reason(lease, observer)
            if reason is not None:
                _unlink(directory, lease.container_id + LEASE_SUFFIX)
                reclaimed.append(Reclaimed(lease, reason))
        removed: list[str] = []
        kept: list[str] = []
        gone = [entry.name for entry in snapshot.untrusted
                if unreadable_stale(entry, observer) is not None]
        kept += [f"{entry.describe()}: its holder may be alive; remove it by hand once "
                 f"container {' / '.join(entry.holders)} is gone"
                 for entry in snapshot.untrusted if entry.name not in gone]
        for name in (*snapshot.temps, *gone):
            problem = _remove(directory, name)
            if problem is None:
                removed.append(name)
            else:
                kept.append(f"cannot remove {problem}")
    return Collected(reclaimed=tuple(reclaimed), removed=tuple(removed), kept=tuple(kept))
