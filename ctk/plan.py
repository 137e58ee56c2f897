"""``gpu-ctk plan BUNDLE``: what the shim and the hook would do to a bundle here, touching nothing.

The shim part runs the real pipeline (``runtime_shim.pipeline.ORDER``) on the bundle's
config.json in memory, with the Context the shim itself builds (``runtime_shim.main.
build_context``), and shows each modifier's notes (the policy that applied, and every edit) and a
unified diff of config.json before and after. The one modifier that is not pure, the MIG lease,
runs as it does in the shim, against a dry-run lease store (``leases.dry_run``) set on the
Context: it reads the lease store without its lock and shows which devices a start would get
now; no lease is taken, no file is written.

The hook part (``ctk.hook_plan``) asks libnvidia-container for the driver's and the devices'
files and lists what the hook would mount for the request the shim would leave behind. In spec
mode (README §Spec mode) no such hook runs: the plan lists instead what the shim declares, the
driver's bind mounts and the ``createContainer`` entry of the spec hook, and the readiness wait
the create would do.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from gpu_core.errors import ShimError

if TYPE_CHECKING:
    from ctk.hook_plan import HookPlan
    from runtime_shim.context import Context


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


def pretty(spec: Any) -> list[str]:
    """The lines a diff compares: indented, key order kept."""
    return (json.dumps(spec, indent=2, ensure_ascii=False) + "\n").splitlines(keepends=True)


def spec_diff(before: Any, after: Any, path: str = "config.json") -> str:
    """A unified diff of pretty-printed config.json; '' when nothing changes."""
    return "".join(difflib.unified_diff(pretty(before), pretty(after), fromfile=path,
                                        tofile=f"{path} (after gpu-container-runtime)"))


@dataclass(frozen=True)
class SpecPlan:
    """Spec mode's part of a plan: the mounts and the hook entry the shim declares, and the
    readiness wait its create does first ('' when it waits for no device)."""

    mounts: tuple[dict[str, Any], ...]
    hook: dict[str, Any]
    readiness: str

    def to_json(self) -> dict[str, Any]:
        return {"mounts": list(self.mounts), "hook": {"stage": "createContainer", **self.hook},
                "readiness": self.readiness}


def plan_spec_mode(spec: Any, ctx: Context) -> Optional[SpecPlan]:
    """What the driver-mounts modifier declares for ``spec`` (the shim's output), or None."""
    from runtime_shim.modifiers import driver_mounts

    if ctx.config.mode != "spec" or ctx.injected is not None or ctx.request is None:
        return None
    declared = driver_mounts.declare(spec, ctx)
    if declared is None:
        return None
    selection = ctx.selection(ctx.request)
    ready = [f"GPU {g.index}" for g in selection.checked_gpus] + \
        [f"MIG {m.parent_index}:{m.index}" for m in selection.mig_devices]
    readiness = (f"the create waits up to {ctx.config.readiness.timeout}s for "
                 f"{', '.join(ready)} to answer NVML") if ready else ""
    return SpecPlan(mounts=declared.mounts, hook=declared.hook, readiness=readiness)


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
    cdi: str = ""
    """The ``devices:`` line for a spec the engine injected from a CDI spec ('' otherwise)."""
    mode: str = "hook"
    spec_mode: Optional[SpecPlan] = None
    """What spec mode declares (None in hook mode and for containers it declares nothing for)."""

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "container_id": self.container_id,
                "config": self.config, "request": self.request_json, "cdi_injected": self.cdi,
                "mode": self.mode,
                "spec_mode": self.spec_mode.to_json() if self.spec_mode else None,
                "edits": [{"modifier": name, "notes": list(notes)} for name, notes in self.edits],
                "changed": bool(self.diff), "diff": self.diff, "hook": self.hook.to_json(),
                "outcome": "fail" if self.hook.problem else "start"}


def describe_injection(ctx: Context) -> str:
    """``devices: CDI-injected by the engine (GPU 0: /dev/nvidia0): not widened``, naming the
    inventory's GPU for each node's minor; '' when the engine injected nothing."""
    injected = ctx.injected
    if injected is None:
        return ""
    if not injected.gpu_minors:
        return f"devices: CDI-injected by the engine ({injected.describe()}): not widened"
    try:
        by_minor = {gpu.minor: gpu.index for gpu in ctx.inventory().gpus}
    except ShimError:
        by_minor = {}
    shown = [f"GPU {by_minor[m]}: /dev/nvidia{m}" if m in by_minor
             else f"/dev/nvidia{m}: no GPU of this host" for m in injected.gpu_minors]
    return f"devices: CDI-injected by the engine ({', '.join(shown)}): not widened"


def describe_request(ctx: Context) -> str:
    from ctk.request_view import summary

    if ctx.request is None and ctx.gpu:
        return "none in the env or mounts; a GPU container by the devices the engine injected"
    return summary(ctx.request)


def make_plan(bundle: str, container_id: str, systemd_cgroup: bool, runtime: str) -> Plan:
    """Load the configuration and the bundle, run the planned pipeline and the hook plan."""
    from ctk import request_view
    from ctk.hook_plan import HookPlan, plan_hook
    from gpu_core import config as config_mod
    from gpu_core.selection import select
    from leases.dry_run import DryRunStore
    from runtime_shim import bundle as bundle_mod
    from runtime_shim import pipeline
    from runtime_shim.main import build_context

    config = config_mod.load()
    loaded = bundle_mod.load_spec(bundle)
    ctx = build_context(loaded.spec, config, bundle=bundle, container_id=container_id,
                        systemd_cgroup=systemd_cgroup, runtime=runtime)
    ctx.leases = DryRunStore(ctx.lease_dir())
    request_line = describe_request(ctx)
    try:
        result = pipeline.run(loaded.spec, ctx)
    except ShimError as error:
        raise ShimError("plan", f"the shim would refuse this container: {error.stage}: "
                                f"{error.cause}") from None
    spec_mode = plan_spec_mode(result.spec, ctx)
    if config.mode == "spec" and ctx.injected is None:
        hook = HookPlan(injected=False, notes=(
            "spec mode: the shim declares the driver in config.json",))
    elif ctx.injected is None:
        hook = plan_hook(config, result.spec, bundle, ctx.request, ctx.inventory)
    else:
        hook = HookPlan(injected=False, notes=("the engine injected the driver from a CDI spec",))
    final = ctx.request  # as the shim leaves it: MIG profiles replaced by what a lease gives
    request_json = request_view.to_json(
        final, None if final is None else lambda: select(final, ctx.inventory()))
    return Plan(bundle=bundle, container_id=container_id, config=config.source,
                request=request_line, request_json=request_json,
                edits=tuple((name, tuple(notes)) for name, notes in result.notes),
                diff=spec_diff(loaded.spec, result.spec) if result.changed else "", hook=hook,
                cdi=describe_injection(ctx), mode=config.mode, spec_mode=spec_mode)


def render(plan: Plan) -> str:
    """The text report."""
    out = [f"plan for {plan.bundle} (container {plan.container_id}), configuration "
           f"{plan.config}", f"request: {plan.request}", *([plan.cdi] if plan.cdi else []), ""]
    if plan.edits:
        out.append("gpu-container-runtime would edit config.json:" if plan.diff else
                   "gpu-container-runtime would leave config.json as it is, noting:")
        out += [f"  {note}" for _, notes in plan.edits for note in notes]
    else:
        out.append("gpu-container-runtime would leave config.json as it is")
    if plan.diff:
        out += ["", plan.diff.rstrip("\n")]
    out.append("")
    if plan.spec_mode is not None:
        out += [*render_spec_mode(plan.spec_mode), ""]
    out += render_hook(plan.hook)
    out += ["", "touched nothing: config.json unchanged, no MIG lease taken, nothing mounted"]
    return "\n".join(out)


def render_spec_mode(declared: SpecPlan) -> list[str]:
    """The spec-mode lines: each bind mount, the spec hook's entry, the readiness wait."""
    out = ["gpu-container-runtime (spec mode) would declare:"]
    if declared.readiness:
        out.append(f"  readiness: {declared.readiness}")
    out += [f"  mount  {m['source']} -> {m['destination']} ({','.join(m['options'])})"
            for m in declared.mounts]
    hook = declared.hook
    out.append(f"  hook   createContainer {hook['path']} {' '.join(hook['args'][1:])} "
               f"(timeout {hook['timeout']}s)")
    return out


def render_hook(hook: HookPlan) -> list[str]:
    if not hook.injected:
        why = hook.notes[0] if hook.notes else "not a GPU container"
        return [f"gpu-container-hook: not injected ({why})"]
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
