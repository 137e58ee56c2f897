"""``gpu-ctk plan BUNDLE``: what the shim and the hook would do to a bundle here, touching nothing.

The shim part runs the real pipeline (``runtime_shim.pipeline.ORDER``) on the bundle's
config.json in memory, with the Context the shim itself builds (``runtime_shim.main.
build_context``), and shows each modifier's notes (the policy that applied, and every edit) and a
unified diff of config.json before and after. The one modifier that is not pure, the MIG lease,
is swapped for a dry run that reads the lease store without its lock and shows which devices a
start would get now; no lease is taken, no file is written.

The hook part (``ctk.hook_plan``) asks libnvidia-container for the driver's and the devices'
files and lists what the hook would mount for the request the shim would leave behind.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpu_core.errors import ShimError

if TYPE_CHECKING:
    from ctk.hook_plan import HookPlan
    from runtime_shim.context import Context, Notes, Spec
    from runtime_shim.pipeline import Modifier


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="the bundle directory (config.json)")
    parser.add_argument("--id", metavar="ID",
                        help="container id (default: the bundle directory's name, as "
                             "containerd and Docker name bundles)")
    parser.add_argument("--systemd-cgroup", action="store_true",
                        help="plan as for an engine using the systemd cgroup driver")
    parser.add_argument("--runtime", metavar="PATH",
                        help="low-level runtime to plan for (default: the first of the "
                             "configuration's runtimes found)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")


def planned_mig_lease(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    """The mig-lease modifier as a dry run: the devices a start would lease now, chosen by the
    same resolver from the live leases of other containers (read without the lock), the same
    config.json rewrite, and no lease taken."""
    import dataclasses as dc

    from gpu_core.request import device_token_kind
    from gpu_core.selection import assign_profiles, profile_requests, select
    from leases import allocation as leases_mod
    from leases import store as lease_store
    from runtime_shim.modifiers import mig_lease

    request = ctx.request
    if request is None:
        return spec, []
    # The same decision as mig_lease.apply, up to the store.
    profiles = profile_requests(request)
    exclusive = ctx.config.mig.exclusive_explicit
    explicit = tuple(t for t in request.devices
                     if exclusive and device_token_kind(t) in mig_lease.EXPLICIT_KINDS)
    if not profiles and not explicit:
        return spec, []
    leases_mod.check_container_id(ctx.container_id)
    inventory = ctx.inventory()
    explicit_migs = (select(dc.replace(request, devices=explicit), inventory).mig_devices
                     if explicit else ())
    snapshot = lease_store.read_all(mig_lease.lease_dir(ctx))
    live: list[leases_mod.Lease] = []
    stale: list[leases_mod.Lease] = []
    for lease in snapshot.leases:
        if lease.container_id == ctx.container_id:
            continue
        reason = leases_mod.stale_reason(lease, lease_store.HOST)
        (stale if reason else live).append(lease)
    resolution = leases_mod.resolve(profiles, explicit_migs, inventory, leases_mod.held_by(live))
    leased = assign_profiles(request, [d.uuid for d in resolution.profiles])
    ctx.request = leased  # as mig_lease.apply does, so later modifiers see the devices
    new_spec = mig_lease.rewrite_request(spec, request, leased)
    new_spec = mig_lease.with_poststop_hook(new_spec, ctx)
    notes = [f"mig-lease: would lease {d.token} -> {d.uuid} ({d.profile} on {d.gpu})"
             for d in resolution.devices]
    notes += [f"mig-lease: would reclaim the stale lease of {lease.container_id}"
              for lease in stale]
    notes.append("mig-lease: dry run: no lease taken; a start chooses again under the lock")
    return new_spec, notes


def plan_order() -> tuple[tuple[str, Modifier], ...]:
    """The shim's pipeline with the MIG lease swapped for its dry run."""
    from runtime_shim import pipeline

    return tuple((name, planned_mig_lease if name == "mig-lease" else modify)
                 for name, modify in pipeline.ORDER)


def pretty(spec: Any) -> list[str]:
    """The lines a diff compares: indented, key order kept."""
    return (json.dumps(spec, indent=2, ensure_ascii=False) + "\n").splitlines(keepends=True)


def spec_diff(before: Any, after: Any, path: str = "config.json") -> str:
    """A unified diff of pretty-printed config.json; '' when nothing changes."""
    return "".join(difflib.unified_diff(pretty(before), pretty(after), fromfile=path,
                                        tofile=f"{path} (after gpu-container-runtime)"))


@dataclass(frozen=True)
class Plan:
    """Everything ``gpu-ctk plan`` reports about one bundle."""

    bundle: str
    container_id: str
    config: str
    request: str
    """The ``request:`` summary line."""
    request_json: dict[str, Any]
    """The whole parsed request (``ctk.request_view.to_json``)."""
    edits: tuple[tuple[str, tuple[str, ...]], ...]
    diff: str
    hook: HookPlan

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "container_id": self.container_id,
                "config": self.config, "request": self.request_json,
                "edits": [{"modifier": name, "notes": list(notes)} for name, notes in self.edits],
                "changed": bool(self.diff), "diff": self.diff, "hook": self.hook.to_json(),
                "outcome": "fail" if self.hook.problem else "start"}


def describe_request(ctx: Context) -> str:
    from ctk.request_view import summary

    return summary(ctx.request)


def make_plan(bundle: str, container_id: str, systemd_cgroup: bool, runtime: str) -> Plan:
    """Load the configuration and the bundle, run the planned pipeline and the hook plan."""
    from ctk import request_view
    from ctk.hook_plan import plan_hook
    from gpu_core import config as config_mod
    from gpu_core.selection import select
    from runtime_shim import bundle as bundle_mod
    from runtime_shim import pipeline
    from runtime_shim.main import build_context

    config = config_mod.load()
    loaded = bundle_mod.load_spec(bundle)
    ctx = build_context(loaded.spec, config, bundle=bundle, container_id=container_id,
                        systemd_cgroup=systemd_cgroup, runtime=runtime)
    request_line = describe_request(ctx)
    try:
        result = pipeline.run(loaded.spec, ctx, order=plan_order())
    except ShimError as error:
        raise ShimError("plan", f"the shim would refuse this container: {error.stage}: "
                                f"{error.cause}") from None
    hook = plan_hook(config, result.spec, bundle, ctx.request, ctx.inventory)
    final = ctx.request  # as the shim leaves it: MIG profiles replaced by what a lease gives
    request_json = request_view.to_json(
        final, None if final is None else lambda: select(final, ctx.inventory()))
    return Plan(bundle=bundle, container_id=container_id, config=config.source,
                request=request_line, request_json=request_json,
                edits=tuple((name, tuple(notes)) for name, notes in result.notes),
                diff=spec_diff(loaded.spec, result.spec) if result.changed else "", hook=hook)


def render(plan: Plan) -> str:
    """The text report."""
    out = [f"plan for {plan.bundle} (container {plan.container_id}), configuration "
           f"{plan.config}", f"request: {plan.request}", ""]
    if plan.edits:
        out.append("gpu-container-runtime would edit config.json:")
        out += [f"  {note}" for _, notes in plan.edits for note in notes]
    else:
        out.append("gpu-container-runtime would leave config.json as it is")
    if plan.diff:
        out += ["", plan.diff.rstrip("\n")]
    out.append("")
    out += render_hook(plan.hook)
    out += ["", "touched nothing: config.json unchanged, no MIG lease taken, nothing mounted"]
    return "\n".join(out)


def render_hook(hook: HookPlan) -> list[str]:
    if not hook.injected:
        return ["gpu-container-hook: not injected (not a GPU container)"]
    out = [f"gpu-container-hook {hook.stage} would"
           + (f", through {hook.library}:" if hook.library else ":")]
    out += [f"  {line}" for line in hook.checks]
    out += [f"  device {line}" for line in hook.devices]
    out += [f"  node   {line}" for line in hook.nodes]
    out += [f"  {f.kind:<6} {f.host_path} -> {f.container_path}" for f in hook.files]
    out += [f"  link   {link.path} -> {link.target}" for link in hook.links]
    if hook.ldcache:
        out.append(f"  ldcache: {hook.ldcache}")
    out += [f"  note: {line}" for line in hook.notes]
    if hook.problem:
        out.append(f"  FAIL: gpu-container-hook: {hook.problem}")
    return out


def default_runtime() -> str:
    """The runtime the shim would exec, for the facts that depend on it; '' when none."""
    from gpu_core import config as config_mod
    from runtime_shim import lowlevel

    try:
        return lowlevel.find(config_mod.load().runtimes).path
    except ShimError:
        return ""


def run(args: argparse.Namespace) -> int:
    bundle = os.path.abspath(args.bundle)
    container_id = args.id if args.id is not None else os.path.basename(bundle)
    runtime = args.runtime if args.runtime is not None else default_runtime()
    plan = make_plan(bundle, container_id, args.systemd_cgroup, runtime)
    if args.json:
        print(json.dumps(plan.to_json(), indent=1))
    else:
        print(render(plan))
    if plan.hook.problem:
        print(f"gpu-ctk: plan: the hook would fail this start: {plan.hook.problem}",
              file=sys.stderr)
        return 1
    return 0
