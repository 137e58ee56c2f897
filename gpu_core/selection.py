"""Resolve a request's device tokens against an inventory (README §Device requests).

Pure: ``select(request, inventory)`` reads values only. ``all`` is every GPU and every MIG
device, as libnvidia-container selects it, so an ``all`` container on a MIG host gets each MIG
device's access capability nodes too. MIG-profile tokens (``mig-1g.10gb``,
``0.mig-3g.40gb``) are not resolved here: the MIG-lease step finds them with
``profile_requests``, leases instances, and swaps them for MIG UUIDs with ``assign_profiles``
before selection runs.
"""

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Optional, Union

from gpu_core.errors import ShimError, one_line
from gpu_core.inventory import Gpu, Inventory, MigDevice, parse_bus_id
from gpu_core.request import DeviceRequest, device_token_kind
from gpu_core.request_words import is_index

Device = Union[Gpu, MigDevice]
"""What one token names: a whole GPU or one MIG device."""

TOKEN_SHOWN = 64
"""How much of an unknown token an error echoes: tokens come from untrusted image env."""

MIG_SHOWN = 16
"""How many MIG devices an ``unknown device`` error lists before it only counts them."""


class Selection(NamedTuple):
    """The devices a request resolved to, each once, in the order the request named them."""

    gpus: tuple[Gpu, ...]
    mig_devices: tuple[MigDevice, ...]
    parents: tuple[Gpu, ...] = ()
    """The GPUs the selected MIG devices live on, in first-mention order."""

    @property
    def checked_gpus(self) -> tuple[Gpu, ...]:
        """GPUs whose driver/arch/brand requirements apply: selected GPUs, then MIG parents."""
        seen = {gpu.uuid for gpu in self.gpus}
        return self.gpus + tuple(gpu for gpu in self.parents if gpu.uuid not in seen)


class ProfileRequest(NamedTuple):
    """One ``mig-<profile>`` or ``<gpu>.mig-<profile>`` token, for the MIG-lease step."""

    token: str
    profile: str
    """Lower-case profile name, ``1g.10gb``."""
    gpu: Optional[int] = None
    """The GPU index the token pins the instance to; None for any GPU (or a UUID pin)."""
    gpu_uuid: Optional[str] = None
    """The lower-case ``GPU-<uuid>`` the token pins the instance to, when pinned by UUID."""


# ASCII digits only, at most 9 of them: int() of a huge or non-ASCII digit string must not run.
# Patterns are matched through re's cache, each compiled on its first use: a create pays only
# for the token shapes its request has.
_GPU_MIG = r"(\d{1,9}):(\d{1,9})"
_LEGACY_MIG = r"mig-(gpu-[0-9a-f-]{1,64})/(\d{1,9})/(\d{1,9})"


def parse_profile(token: str) -> Optional[ProfileRequest]:
    """The profile request ``token`` spells, or None when it is another kind of token."""
    # request.device_token_kind is the one judge of token shapes, so what parse_request
    # accepted as a profile token is exactly what resolves here.
    kind = device_token_kind(token)
    lowered = token.lower()
    if kind == "mig-profile":
        return ProfileRequest(token=token, profile=lowered[len("mig-"):])
    if kind != "gpu-mig-profile":
        return None
    gpu, _, profile = lowered.partition(".mig-")
    if gpu.startswith("gpu-"):
        return ProfileRequest(token=token, profile=profile, gpu_uuid=gpu)
    return ProfileRequest(token=token, profile=profile, gpu=int(gpu))


def profile_requests(request: DeviceRequest) -> tuple[ProfileRequest, ...]:
    """Every MIG-profile token of ``request`` in order; repeats are kept, since
    ``mig-1g.10gb,mig-1g.10gb`` asks for two instances."""
    return tuple(p for p in (parse_profile(t) for t in request.devices) if p is not None)


def assign_profiles(request: DeviceRequest, uuids: Sequence[str]) -> DeviceRequest:
    """``request`` with its i-th profile token replaced by ``uuids[i]`` (a leased MIG UUID)."""
    wanted = len(profile_requests(request))
    if len(uuids) != wanted:
        raise ValueError(f"{wanted} MIG profile tokens, {len(uuids)} UUIDs")
    leased = iter(uuids)
    devices = tuple(next(leased) if parse_profile(t) else t for t in request.devices)
    return request._replace(devices=devices)


def select(request: DeviceRequest, inventory: Inventory) -> Selection:
    """Resolve every token of ``request``; an unknown one is a one-line ``request`` error that
    says what this host has."""
    if request.devices in ((), ("none",)):
        return Selection(gpus=(), mig_devices=())
    index = _Index(inventory)
    chosen: dict[str, Device] = {}
    unknown: list[str] = []
    for token in request.devices:
        profile = parse_profile(token)
        if profile is not None:
            raise ShimError("request", one_line(
                f"MIG profile request {token[:TOKEN_SHOWN]} needs the MIG lease allocator, "
                "which did not run for this container"))
        found = index.lookup(token)
        if found is None:
            unknown.append(token)
        for device in found or ():
            chosen.setdefault(device.uuid, device)
    _refuse_global_mig_caps(request, chosen.values())
    if unknown:
        more = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
        raise ShimError("request", one_line(
            f"unknown device {unknown[0][:TOKEN_SHOWN]}{more}; {describe(inventory)}"))
    gpus = tuple(d for d in chosen.values() if isinstance(d, Gpu))
    migs = tuple(d for d in chosen.values() if isinstance(d, MigDevice))
    parents: dict[str, Gpu] = {}
    for mig in migs:
        parents.setdefault(mig.parent_uuid, index.by_uuid[mig.parent_uuid.lower()])
    return Selection(gpus=gpus, mig_devices=migs, parents=tuple(parents.values()))


def _refuse_global_mig_caps(request: DeviceRequest, chosen: Iterable[Device]) -> None:
    """libnvidia-container refuses MIG config/monitor ``all`` beside specific MIG devices: the
    global capability would reach every MIG device while only some were asked for."""
    if request.wants_all or not any(isinstance(d, MigDevice) for d in chosen):
        return
    for name, asked, what in (("NVIDIA_MIG_CONFIG_DEVICES", request.mig_config, "mig-config"),
                              ("NVIDIA_MIG_MONITOR_DEVICES", request.mig_monitor,
                               "mig-monitor")):
        if asked:
            raise ShimError("request", f"{name}=all: cannot enable {what} with specific MIG "
                                       "devices selected")


def describe(inventory: Inventory) -> str:
    """``this host has GPUs 0-7 and MIG devices 0:0,0:1``, bounded in length."""
    if not inventory.gpus:
        return "this host has no GPUs"
    text = f"this host has GPUs {_ranges([gpu.index for gpu in inventory.gpus])}"
    migs = [f"{m.parent_index}:{m.index}" for gpu in inventory.gpus for m in gpu.mig_devices]
    if migs:
        shown = ",".join(migs[:MIG_SHOWN])
        rest = f" (+{len(migs) - MIG_SHOWN} more)" if len(migs) > MIG_SHOWN else ""
        text += f" and MIG devices {shown}{rest}"
    return text


def _ranges(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 5]`` -> ``0-3,5``."""
    spans: list[list[int]] = []
    for number in sorted(set(numbers)):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


class _Index:
    """Lookup tables over one inventory, built once so a request of many tokens stays linear."""

    def __init__(self, inventory: Inventory) -> None:
        self.gpus = inventory.gpus
        self.by_index = {gpu.index: gpu for gpu in inventory.gpus}
        self.by_uuid = {gpu.uuid.lower(): gpu for gpu in inventory.gpus}
        self.by_bus = {parse_bus_id(gpu.bus_id): gpu for gpu in inventory.gpus}
        migs = [mig for gpu in inventory.gpus for mig in gpu.mig_devices]
        self.migs = tuple(migs)
        self.mig_by_uuid = {mig.uuid.lower(): mig for mig in migs}
        self.mig_by_slot = {(mig.parent_index, mig.index): mig for mig in migs}
        self.mig_by_ids = {(mig.parent_uuid.lower(), mig.gi_id, mig.ci_id): mig for mig in migs}

    def lookup(self, token: str) -> Optional[Sequence[Device]]:
        """The devices ``token`` names, or None when it names nothing on this host."""
        lowered = token.lower()
        if lowered == "all":
            return (*self.gpus, *self.migs)
        one: Optional[Device] = None
        if is_index(token):
            one = self.by_index.get(int(token))
        elif (slot := re.fullmatch(_GPU_MIG, token, re.ASCII)) is not None:
            one = self.mig_by_slot.get((int(slot.group(1)), int(slot.group(2))))
        elif lowered.startswith("gpu-"):
            one = self.by_uuid.get(lowered)
        elif (legacy := re.fullmatch(_LEGACY_MIG, token,
                                          re.IGNORECASE | re.ASCII)) is not None:
            # Drivers before R470 named MIG devices MIG-GPU-<uuid>/<gi>/<ci>.
            one = self.mig_by_ids.get((legacy.group(1).lower(), int(legacy.group(2)),
                                       int(legacy.group(3))))
        elif lowered.startswith("mig-"):
            one = self.mig_by_uuid.get(lowered)
        elif (bus := parse_bus_id(token)) is not None:
            one = self.by_bus.get(bus)
        return None if one is None else (one,)
