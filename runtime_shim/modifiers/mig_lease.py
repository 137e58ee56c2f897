"""Lease MIG devices by profile and make config.json name them (README: MIG by profile).

``mig-1g.10gb`` (any GPU) and ``0.mig-3g.40gb`` / ``GPU-<uuid>.mig-3g.40gb`` (that GPU) become
concrete MIG UUIDs that no live container holds, recorded in the lease store the Context
gives (``Context.lease_store``: the node's real one, ``leases.store``, or the dry run of
``gpu-ctk plan``) under this container's id. The request in config.json is rewritten to
those UUIDs (``NVIDIA_VISIBLE_DEVICES`` in ``process.env``, or the ``/dev/null`` device-list
mounts when the request came from there), so the hook and every later reader agree on the
devices, and ``ctx.request`` is replaced likewise so later modifiers (devices first) declare
exactly them. Explicit MIG requests (``MIG-<uuid>``, ``<gpu>:<mig>``) take an exclusive lease too
when ``mig.exclusive_explicit`` is set (the default).

Runs first. Not pure like the others: taking a lease is the point. The lease taken is recorded
in ``ctx.lease``, so the shim gives it back when the create fails (``leases.release``). The
original request is kept in two annotations (``REQUESTED``, ``LEASED``), so a second run on the
same config.json (a retried create) resolves the profiles again rather than pinning the UUIDs of
the first run. A ``poststop`` entry of our hook releases the lease when the runtime destroys the
container; the shim's ``delete`` does too, and stale leases are reclaimed on every allocation.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from gpu_core.errors import ShimError
from gpu_core.request import DEVICE_LIST_ROOT, VISIBLE_DEVICES, DeviceRequest, device_token_kind
from runtime_shim.context import Context, Notes, Spec
from runtime_shim.modifiers import hook_injection

if TYPE_CHECKING:
    from leases.allocation import Resolution
    from leases.interface import Allocation

EXPLICIT_KINDS = frozenset({"mig-uuid", "mig-index"})
"""Token shapes that name one MIG device directly."""

PROFILE_KINDS = frozenset({"mig-profile", "gpu-mig-profile"})
"""Token shapes selection.parse_profile turns into a profile request (and no others)."""

DEFAULT_STATE_ROOTS = {"runc": "/run/runc", "crun": "/run/crun"}
"""Where runc and crun keep container state when run as root without ``--root``."""


def runtime_state_root(runtime_path: str, root_flag: Optional[str]) -> str:
    """The runtime's state root: its ``--root`` (absolute), else its default, else unknown."""
    if root_flag:
        return os.path.abspath(root_flag)
    return DEFAULT_STATE_ROOTS.get(os.path.basename(runtime_path), "")


REQUESTED = "gpu-container-shim.mig.requested"
LEASED = "gpu-container-shim.mig.leased"
"""Annotations the shim writes next to a rewritten request: the device tokens as the container
asked for them and as they were rewritten (comma lists). A retried create of the same bundle
(the engine re-runs ``create`` after a failed start) then asks for the profile again instead of
demanding the stale UUID, which another container may hold by now."""


def original_request(spec: Spec, request: DeviceRequest) -> DeviceRequest:
    """The request as first written, when ``spec`` still holds exactly our rewrite of it.

    Annotations are untrusted, so the record is used only when its leased list is the very
    request in force, and it may only turn a token back into a MIG profile token: a container
    can get nothing through it that its own request could not name."""
    annotations = spec.get("annotations")
    if not isinstance(annotations, dict):
        return request
    requested, leased = annotations.get(REQUESTED), annotations.get(LEASED)
    if not isinstance(requested, str) or not isinstance(leased, str) or \
            tuple(leased.split(",")) != request.devices:
        return request
    tokens = tuple(requested.split(","))
    if len(tokens) != len(request.devices) or any(
            token != now and device_token_kind(token) not in PROFILE_KINDS
            for token, now in zip(tokens, request.devices)):
        return request
    return request._replace(devices=tokens)


def record_request(spec: Spec, requested: DeviceRequest, leased: DeviceRequest) -> Spec:
    """``spec`` with the REQUESTED/LEASED annotations for a rewrite of ``requested``."""
    annotations = spec.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    record = {REQUESTED: ",".join(requested.devices), LEASED: ",".join(leased.devices)}
    if all(annotations.get(key) == value for key, value in record.items()):
        return spec
    return {**spec, "annotations": {**annotations, **record}}


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    current = ctx.request
    if current is None or ctx.injected is not None:
        return spec, []  # injected by the engine: its devices, no lease (README §Beside CDI)
    request = original_request(spec, current)
    exclusive = ctx.config.mig.exclusive_explicit
    explicit = tuple(t for t in request.devices
                     if exclusive and device_token_kind(t) in EXPLICIT_KINDS)
    if not explicit and not any(device_token_kind(t) in PROFILE_KINDS for t in request.devices):
        return spec, []  # before importing the lease store: most GPU containers end here
    from gpu_core.selection import assign_profiles, profile_requests, select
    from leases import allocation as leases_mod
    from leases.host import process_start

    profiles = profile_requests(request)
    if not profiles and not explicit:
        return spec, []
    if not ctx.container_id:
        raise ShimError(leases_mod.STAGE, "a MIG lease needs the container id")
    inventory = ctx.inventory()
    explicit_migs = (select(request._replace(devices=explicit), inventory).mig_devices
                     if explicit else ())
    holder = leases_mod.Holder(
        container_id=ctx.container_id, runtime_root=ctx.runtime_root, bundle=ctx.bundle,
        shim_pid=os.getpid(), shim_start=process_start(os.getpid()))
    chosen: list[leases_mod.Resolution] = []

    def decide(others: Mapping[str, leases_mod.Lease]) -> leases_mod.Lease:
        resolution = leases_mod.resolve(profiles, explicit_migs, inventory,
                                        leases_mod.held_by(list(others.values())))
        chosen.append(resolution)
        return leases_mod.Lease(holder=holder, devices=resolution.devices, created=time.time())

    store = ctx.lease_store()
    allocation = store.allocate(ctx.container_id, decide)
    resolution = chosen[-1]
    leased = assign_profiles(request, [d.uuid for d in resolution.profiles])
    ctx.request = leased  # the documented Context mutations (see Context)
    ctx.lease = allocation.lease
    new_spec = rewrite_request(spec, current, leased)
    if leased.devices != request.devices:
        new_spec = record_request(new_spec, request, leased)
    new_spec = with_poststop_hook(new_spec, ctx)
    if store.dry_run:
        return new_spec, dry_run_notes(resolution, allocation)
    notes = [f"mig-lease: {d.token} -> {d.uuid} ({d.profile} on {d.gpu})"
             for d in resolution.devices]
    notes += [f"mig-lease: reclaimed stale lease of {r.lease.container_id} "
              f"({', '.join(d.uuid for d in r.lease.devices)}): {r.reason}"
              for r in allocation.reclaimed if r.lease.container_id != ctx.container_id]
    notes += [f"mig-lease: removed incomplete write {name}" for name in allocation.removed_temps]
    notes += [f"mig-lease: {problem}" for problem in allocation.problems]
    return new_spec, notes


def dry_run_notes(resolution: Resolution, allocation: Allocation) -> Notes:
    """What a dry-run store's allocation (``gpu-ctk plan``) says a start would do."""
    notes = [f"mig-lease: would lease {d.token} -> {d.uuid} ({d.profile} on {d.gpu})"
             for d in resolution.devices]
    notes += [f"mig-lease: would reclaim the stale lease of {r.lease.container_id}"
              for r in allocation.reclaimed]
    notes.append("mig-lease: dry run: no lease taken; a start chooses again under the lock")
    return notes


def rewrite_request(spec: Spec, before: DeviceRequest, after: DeviceRequest) -> Spec:
    """``spec`` with profile tokens swapped for leased UUIDs where the request came from."""
    if after.devices == before.devices:
        return spec
    if before.source == "mounts":
        return _rewrite_mounts(spec, before, after)
    process = spec.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("env"), list):
        return spec
    value = f"{VISIBLE_DEVICES}={','.join(after.devices)}"
    env = [value if isinstance(e, str) and e.partition("=")[0] == VISIBLE_DEVICES else e
           for e in process["env"]]
    if env == process["env"]:
        return spec
    return {**spec, "process": {**process, "env": env}}


def _rewrite_mounts(spec: Spec, before: DeviceRequest, after: DeviceRequest) -> Spec:
    """Device-list mounts name one token each (repeats collapse), so map token -> UUID."""
    swap = {b: a for b, a in zip(before.devices, after.devices) if b != a}
    mounts = spec.get("mounts")
    if not isinstance(mounts, list):
        return spec
    new_mounts: list[Any] = []
    for mount in mounts:
        if isinstance(mount, dict) and isinstance(mount.get("destination"), str):
            dest = posixpath.normpath(mount["destination"])
            token = dest[len(DEVICE_LIST_ROOT) + 1:] if dest.startswith(DEVICE_LIST_ROOT + "/") \
                else ""
            if token in swap:
                mount = {**mount, "destination": f"{DEVICE_LIST_ROOT}/{swap[token]}"}
        new_mounts.append(mount)
    return {**spec, "mounts": new_mounts}


def with_poststop_hook(spec: Spec, ctx: Context) -> Spec:
    """``spec`` with our hook's ``poststop`` entry (which releases the lease), added once."""
    entry = hook_injection.our_entry(ctx)
    entry = {**entry, "args": [*entry["args"][:-1], "poststop"]}
    hooks = spec.get("hooks")
    hooks = hooks if isinstance(hooks, dict) else {}
    poststop = hooks.get("poststop")
    poststop = poststop if isinstance(poststop, list) else []
    if entry in poststop:
        return spec
    return {**spec, "hooks": {**hooks, "poststop": [*poststop, entry]}}
