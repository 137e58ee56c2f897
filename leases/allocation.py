"""MIG leases: who holds which MIG device, when a holder is gone, and which devices a new
request gets (README §MIG by profile, with leases).

Pure: records, the staleness rule over observations of the host, and the resolver. The store
(a directory of these records, a lock, atomic writes) is ``leases.store`` and the modules it
names.

A lease belongs to one container id. It is *live* while the low-level runtime knows the
container (its state directory ``<runtime root>/<id>`` exists), or while the process that took
it is still running (the shim, which execs into ``runc create``: this covers the window between
writing the lease and the runtime creating its state directory), or while the container's init
process recorded at prestart runs. Otherwise it is *stale* and the next allocation reclaims it.
Process ids are compared together with their start time, so a reused pid does not keep a dead
holder's lease alive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from gpu_core.container_id import is_lease_name
from gpu_core.errors import ShimError, one_line
from gpu_core.inventory import Inventory, MigDevice
from gpu_core.selection import ProfileRequest

STAGE = "mig"
FORMAT = 1
"""Version of the lease file layout; a reader refuses other versions rather than guess."""

HOLDERS_SHOWN = 8
"""How many holders a ``no free MIG instance`` error names before it only counts them."""



class LeaseFormatError(ValueError):
    """A lease file that does not hold a lease record: reported, never trusted."""


def check_container_id(container_id: str) -> str:
    """``container_id`` when it can name a lease file; a ``mig`` error otherwise."""
    if not is_lease_name(container_id):
        raise ShimError(STAGE, one_line(
            f"container id {container_id[:80]!r} cannot hold a MIG lease (expected 1-200 of "
            "A-Z a-z 0-9 _ + . -)"))
    return container_id


@dataclass(frozen=True)
class Holder:
    """The container a lease belongs to and what tells whether it still lives."""

    container_id: str
    runtime_root: str
    """The low-level runtime's state root; ``<root>/<id>`` exists while it knows the container.
    Empty when unknown (then only the processes below count)."""
    bundle: str
    shim_pid: int
    """The process that took the lease: the shim, which then becomes ``runc create``."""
    shim_start: Optional[int] = None
    """Start time of ``shim_pid`` (``/proc/<pid>/stat`` field 22): a reused pid differs."""
    init_pid: Optional[int] = None
    """The container's init process, recorded by the prestart hook when it runs."""
    init_start: Optional[int] = None


@dataclass(frozen=True)
class LeasedDevice:
    """One MIG device in a lease, with what asked for it."""

    uuid: str
    profile: str
    gpu: str
    """The parent GPU's UUID."""
    token: str
    """The request token that got it: ``mig-1g.10gb``, ``1.mig-3g.40gb``, or an explicit one."""


@dataclass(frozen=True)
class Lease:
    """The MIG devices one container holds."""

    holder: Holder
    devices: tuple[LeasedDevice, ...]
    created: float
    """Seconds since the epoch when the lease was taken."""

    @property
    def container_id(self) -> str:
        return self.holder.container_id

    def to_json(self) -> dict[str, Any]:
        h = self.holder
        return {
            "format": FORMAT,
            "container_id": h.container_id,
            "created": self.created,
            "holder": {"runtime_root": h.runtime_root, "bundle": h.bundle,
                       "shim_pid": h.shim_pid, "shim_start": h.shim_start,
                       "init_pid": h.init_pid, "init_start": h.init_start},
            "devices": [{"uuid": d.uuid, "profile": d.profile, "gpu": d.gpu, "token": d.token}
                        for d in self.devices],
        }

    @classmethod
    def from_json(cls, data: Any) -> Lease:
        """Parse a lease record; any deviation is a ``LeaseFormatError`` naming the field."""
        record = _object(data, "<root>")
        if record.get("format") != FORMAT:
            raise LeaseFormatError(f"format: expected {FORMAT}, got {record.get('format')!r}")
        container_id = _typed(record, "container_id", str)
        if not is_lease_name(container_id):
            raise LeaseFormatError("container_id: not a container id")
        created = record.get("created")
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise LeaseFormatError("created: expected a number")
        holder = _object(record.get("holder"), "holder")
        devices = record.get("devices")
        if not isinstance(devices, list):
            raise LeaseFormatError("devices: expected a list")
        return cls(
            holder=Holder(
                container_id=container_id,
                runtime_root=_typed(holder, "runtime_root", str, "holder."),
                bundle=_typed(holder, "bundle", str, "holder."),
                shim_pid=_typed(holder, "shim_pid", int, "holder."),
                shim_start=_optional_int(holder, "shim_start"),
                init_pid=_optional_int(holder, "init_pid"),
                init_start=_optional_int(holder, "init_start")),
            devices=tuple(
                LeasedDevice(**{key: _typed(_object(d, f"devices[{i}]"), key, str,
                                            f"devices[{i}].")
                                for key in ("uuid", "profile", "gpu", "token")})
                for i, d in enumerate(devices)),
            created=float(created))


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise LeaseFormatError(f"{where}: expected an object")
    return value


def _typed(record: Mapping[str, Any], key: str, kind: type, prefix: str = "") -> Any:
    value = record.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise LeaseFormatError(f"{prefix}{key}: expected {kind.__name__}")
    return value


def _optional_int(record: Mapping[str, Any], key: str) -> Optional[int]:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise LeaseFormatError(f"holder.{key}: expected an integer or null")
    return value


# --- staleness -----------------------------------------------------------------------------------

class Observer(Protocol):
    """What the staleness rule needs to know about the host (the store reads /proc and the
    runtime's state root; tests answer from tables)."""

    def runtime_knows(self, runtime_root: str, container_id: str) -> bool:
        """Whether the runtime has state for ``container_id`` under ``runtime_root``."""

    def process_start(self, pid: int) -> Optional[int]:
        """The start time of running process ``pid``; None when there is none (or a zombie)."""


def _running(observer: Observer, pid: Optional[int], start: Optional[int]) -> bool:
    if pid is None or pid <= 0:
        return False
    started = observer.process_start(pid)
    return started is not None and (start is None or started == start)


def stale_reason(lease: Lease, observer: Observer) -> Optional[str]:
    """Why ``lease`` no longer protects anything, or None while its holder may still use it."""
    h = lease.holder
    if h.runtime_root and observer.runtime_knows(h.runtime_root, h.container_id):
        return None
    if _running(observer, h.shim_pid, h.shim_start):
        return None
    if _running(observer, h.init_pid, h.init_start):
        return None
    where = f"under {h.runtime_root}" if h.runtime_root else "(no runtime root recorded)"
    init = f", init pid {h.init_pid} gone" if h.init_pid else ""
    return f"container unknown to the runtime {where}, start pid {h.shim_pid} gone{init}"


# --- resolution ----------------------------------------------------------------------------------

def _pinned(want: ProfileRequest) -> bool:
    return want.gpu is not None or want.gpu_uuid is not None


def _on_gpu(want: ProfileRequest, mig: MigDevice) -> bool:
    if want.gpu is not None:
        return mig.parent_index == want.gpu
    if want.gpu_uuid is not None:
        return mig.parent_uuid.lower() == want.gpu_uuid
    return True


def _where(want: ProfileRequest) -> str:
    if want.gpu is not None:
        return f" on GPU {want.gpu}"
    if want.gpu_uuid is not None:
        return f" on GPU {want.gpu_uuid}"
    return ""


@dataclass(frozen=True)
class Resolution:
    """What one request leases: its explicit MIG devices and one device per profile request."""

    explicit: tuple[LeasedDevice, ...]
    """Each explicitly named MIG device once, in request order."""
    profiles: tuple[LeasedDevice, ...]
    """The device chosen for each profile request, positionally (for ``assign_profiles``)."""

    @property
    def devices(self) -> tuple[LeasedDevice, ...]:
        return (*self.explicit, *self.profiles)


def resolve(profiles: Sequence[ProfileRequest], explicit: Sequence[MigDevice],
            inventory: Inventory, held: Mapping[str, str]) -> Resolution:
    """The devices a request leases: ``explicit`` MIG devices, then one free instance per
    profile request.

    ``held`` maps the lower-case UUID of every MIG device a *live other* container holds to that
    container's id. GPU-pinned requests are served first (they have fewer choices), each taking
    the lowest free (GPU index, slot). Raises ``mig: ...`` when an explicit device is held or a
    profile has no free instance; nothing is leased then.
    """
    chosen: dict[str, str] = {}
    """Lower-case UUID -> token, for what this request already took."""
    leased: list[LeasedDevice] = []
    for mig in explicit:
        key = mig.uuid.lower()
        if key in chosen:
            continue
        if key in held:
            raise ShimError(STAGE, one_line(
                f"MIG device {mig.parent_index}:{mig.index} ({mig.uuid}) is held by container "
                f"{held[key]}"))
        chosen[key] = mig.uuid
        leased.append(LeasedDevice(uuid=mig.uuid, profile=mig.profile, gpu=mig.parent_uuid,
                                   token=mig.uuid))
    all_migs = [mig for gpu in inventory.gpus for mig in gpu.mig_devices]
    picks: dict[int, LeasedDevice] = {}
    order = sorted(range(len(profiles)), key=lambda i: (not _pinned(profiles[i]), i))
    for i in order:
        want = profiles[i]
        exist = [m for m in all_migs if m.profile.lower() == want.profile and _on_gpu(want, m)]
        free = [m for m in exist if m.uuid.lower() not in held and m.uuid.lower() not in chosen]
        if not free:
            raise ShimError(STAGE, nothing_free(want, exist, held, chosen, inventory))
        mig = free[0]
        chosen[mig.uuid.lower()] = want.token
        picks[i] = LeasedDevice(uuid=mig.uuid, profile=mig.profile, gpu=mig.parent_uuid,
                                token=want.token)
    return Resolution(explicit=tuple(leased),
                      profiles=tuple(picks[i] for i in range(len(profiles))))


def nothing_free(want: ProfileRequest, exist: Sequence[MigDevice], held: Mapping[str, str],
                 chosen: Mapping[str, str], inventory: Inventory) -> str:
    """The one-line cause when ``want`` cannot be served: how many instances exist and who holds
    them, or which profiles this host has when none exists."""
    where = _where(want)
    if not exist:
        return one_line(f"no MIG instance of profile {want.profile}{where} exists; "
                        f"{describe_profiles(inventory)}")
    holders = []
    for mig in exist:
        key = mig.uuid.lower()
        who = held.get(key) or ("this container" if key in chosen else "nobody")
        holders.append(f"{who} ({mig.uuid})")
    shown = ", ".join(holders[:HOLDERS_SHOWN])
    if len(holders) > HOLDERS_SHOWN:
        shown += f" and {len(holders) - HOLDERS_SHOWN} more"
    return one_line(f"no free MIG instance of profile {want.profile}{where}: {len(exist)} "
                    f"exist, held by {shown}")


def describe_profiles(inventory: Inventory) -> str:
    """``MIG profiles here: 1g.10gb x7 (GPU 0), 3g.40gb x2 (GPU 1)``, or that there are none."""
    counts: dict[str, dict[int, int]] = {}
    for gpu in inventory.gpus:
        for mig in gpu.mig_devices:
            per_gpu = counts.setdefault(mig.profile, {})
            per_gpu[gpu.index] = per_gpu.get(gpu.index, 0) + 1
    if not counts:
        return "this host has no MIG devices"
    parts = []
    for profile in sorted(counts):
        per_gpu = counts[profile]
        gpus = ",".join(str(g) for g in sorted(per_gpu))
        parts.append(f"{profile} x{sum(per_gpu.values())} (GPU {gpus})")
    return "MIG profiles here: " + ", ".join(parts)


def held_by(leases: Sequence[Lease]) -> dict[str, str]:
    """Lower-case MIG UUID -> holder container id over ``leases``."""
    return {d.uuid.lower(): lease.container_id for lease in leases for d in lease.devices}
