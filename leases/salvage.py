"""Lease files we cannot read as a lease, and what they still hold (README §MIG by profile).

Leases fail closed: a file in the lease directory that is corrupt, of another format version,
oversized, empty, not a regular file, a symlink, of the wrong JSON type or naming another
container than its file name is not a lease we can trust, but it may be one a live container
depends on. So it counts as held: every MIG UUID written anywhere in it is held, and when none
can be read from it, it may hold any device, so none is handed out while it is there. It is
removed only once its holder is provably gone, which needs the holder fields of a lease record
(a newer format usually keeps them); without them it stays until an administrator removes it.

Pure: the store (leases.files, leases.store, leases.release) reads the bytes and acts on the
verdicts.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from gpu_core.container_id import is_lease_name
from gpu_core.errors import one_line
from leases.allocation import Holder, Lease, LeasedDevice, Observer, stale_reason

MIG_UUID = re.compile(rb"(?<![0-9a-z-])(?:MIG-GPU-[0-9a-f]+(?:-[0-9a-f]+)*/[0-9]{1,9}/[0-9]{1,9}"
                      rb"(?![0-9])|MIG-[0-9a-f]+(?:-[0-9a-f]+)*(?![0-9a-z/-]))", re.IGNORECASE)
"""Both MIG UUID spellings (gpu_core/request.py), found in raw bytes whatever surrounds them."""


@dataclass(frozen=True)
class Unreadable:
    """A ``.json`` entry of the lease directory that holds no lease we can trust."""

    name: str
    reason: str
    devices: Optional[frozenset[str]]
    """Lower-case MIG UUIDs found in it; None when none could be read: it may hold any."""
    holder: Optional[Holder] = None
    """The holder fields that could be read, enough to tell whether it still lives."""

    @property
    def container_id(self) -> str:
        """The container its file name gives."""
        return self.name[: -len(".json")] if self.name.endswith(".json") else self.name

    @property
    def holders(self) -> tuple[str, ...]:
        """Every container it may belong to: its file name's, and the one it names."""
        named = self.holder.container_id if self.holder is not None else ""
        return tuple(dict.fromkeys(x if is_lease_name(x) else ascii(x)
                                   for x in (self.container_id, named) if x))

    @property
    def shown_name(self) -> str:
        """The file name as printed: quoted when it is not a plain lease name (it could hold a
        newline or a control character, and every message is one line)."""
        return self.name if is_lease_name(self.container_id) else ascii(self.name)

    def describe(self) -> str:
        held = ("any MIG device" if self.devices is None
                else ", ".join(sorted(self.devices)))
        return f"unreadable lease {self.shown_name} ({self.reason}), counted as holding {held}"


def _int(record: Any, key: str) -> Optional[int]:
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def salvage_holder(data: bytes, file_id: str) -> Optional[Holder]:
    """The holder fields of a record that is not a valid lease, when they can be read."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return None
    holder = record.get("holder") if isinstance(record, dict) else None
    pid = _int(holder, "shim_pid")
    if not isinstance(holder, dict) or pid is None:
        return None
    named = record.get("container_id")
    root = holder.get("runtime_root")
    return Holder(container_id=named if isinstance(named, str) and named else file_id,
                  runtime_root=root if isinstance(root, str) else "", bundle="",
                  shim_pid=pid, shim_start=_int(holder, "shim_start"),
                  init_pid=_int(holder, "init_pid"), init_start=_int(holder, "init_start"))


def salvage(name: str, data: Optional[bytes], reason: str, complete: bool = True) -> Unreadable:
    """What the unreadable entry ``name`` still tells. ``data``: its bytes (None when they
    could not be read); ``complete``: False when only a prefix of them was read."""
    entry = Unreadable(name=name, reason=reason, devices=None)
    if data is None:
        return entry
    found = frozenset(m.group().decode("ascii").lower() for m in MIG_UUID.finditer(data))
    devices = found if found and complete else None
    return dataclasses.replace(entry, devices=devices,
                               holder=salvage_holder(data, entry.container_id) if complete
                               else None)


def stale(entry: Unreadable, observer: Observer) -> Optional[str]:
    """Why ``entry``'s holder is provably gone, or None while it may be alive."""
    if entry.holder is None:
        return None
    reason: Optional[str] = None
    for container_id in entry.holders:
        holder = dataclasses.replace(entry.holder, container_id=container_id)
        reason = stale_reason(Lease(holder=holder, devices=(), created=0.0), observer)
        if reason is None:
            return None
    return reason


def names_only_its_file(entry: Unreadable) -> bool:
    """It names no other container than the one its file name gives."""
    return entry.holders == (entry.container_id,)


def as_held(entry: Unreadable, container_id: str) -> Lease:
    """The devices ``entry`` holds, as a lease an allocation for ``container_id`` respects;
    ValueError (a one-line cause) when it may hold anything or belongs to that container id."""
    what = f"{entry.describe()}; its holder may be alive"
    fix = (f"remove it once container {' / '.join(entry.holders)} is gone "
           "(gpu-ctk leases list shows it)")
    if container_id in entry.holders:
        raise ValueError(one_line(f"{what}, so container {container_id} cannot take new "
                                  f"leases: {fix}"))
    if entry.devices is None:
        raise ValueError(one_line(f"{what}, so no MIG device is handed out: {fix}"))
    holder = Holder(container_id=f"{entry.container_id} (unreadable lease {entry.name})",
                    runtime_root="", bundle="", shim_pid=0)
    return Lease(holder=holder, created=0.0, devices=tuple(
        LeasedDevice(uuid=uuid, profile="", gpu="", token="") for uuid in sorted(entry.devices)))
