"""Inject our OCI hook into GPU containers, replacing stale copies and NVIDIA's legacy hook.

In spec mode (``mode: spec``) the driver is declared in config.json by the ``driver-mounts``
modifier instead, so this one injects nothing and only removes those entries: either would
mount the driver a second time through libnvidia-container.

The entry carries an explicit ``env``: runc then gives the hook exactly that environment, so a
container's LD_PRELOAD or PYTHONPATH can never reach a root process on the host.
"""

from __future__ import annotations

import os
from typing import Any

from gpu_core.config import DEFAULT_PATH, ENV_VAR
from gpu_core.errors import ShimError
from runtime_shim.context import Context, Notes, Spec

HOOK_STAGES = ("prestart", "createRuntime")
LEGACY_NAMES = frozenset({"nvidia-container-runtime-hook", "nvidia-container-toolkit"})
OUR_NAMES = frozenset({"gpu-container-hook"})
SAFE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def our_entry(ctx: Context) -> dict[str, Any]:
    """The hook entry this configuration injects."""
    settings = ctx.config.hook
    path = settings.path
    args = list(settings.args) or [os.path.basename(path)]
    env = [SAFE_PATH]
    if ctx.config.source not in ("<defaults>", DEFAULT_PATH):
        env.append(f"{ENV_VAR}={ctx.config.source}")
    return {"path": path, "args": [*args, settings.stage], "env": env,
            "timeout": settings.timeout}


def is_replaced(entry: Any, ours: dict[str, Any]) -> bool:
    """True for our own hook (any version of it) and NVIDIA's legacy hook."""
    if not isinstance(entry, dict):
        return False
    path = entry.get("path")
    if not isinstance(path, str):
        return False
    name = os.path.basename(path)
    args = entry.get("args")
    if path == ours["path"] and isinstance(args, list) and \
            args[: len(ours["args"]) - 1] == ours["args"][:-1]:
        return True
    return name in OUR_NAMES or name in LEGACY_NAMES


def apply(spec: Spec, ctx: Context) -> tuple[Spec, Notes]:
    if not ctx.gpu:
        return spec, []
    if ctx.injected is not None:
        # The engine mounted the driver from the CDI spec (with its own hooks); our hook would
        # mount it again and select devices from the env (README §Beside CDI and DRA).
        return spec, ["hook: not injected: the engine injected the driver from a CDI spec"]
    if ctx.request is None:
        return spec, []
    ours = our_entry(ctx)
    stage = ours["args"][-1]
    spec_mode = ctx.config.mode == "spec"
    hooks = spec.get("hooks")
    if hooks is None:
        hooks = {}
    elif not isinstance(hooks, dict):
        # The runtime would reject it; replacing it would silently drop the engine's hooks.
        raise ShimError("hook", f"config.json hooks is {type(hooks).__name__}, not an object")
    new_hooks = dict(hooks)
    removed = 0
    for name in HOOK_STAGES:
        entries = hooks.get(name)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ShimError("hook", f"config.json hooks.{name} is {type(entries).__name__}, "
                                    f"not a list")
        kept = [e for e in entries if not is_replaced(e, ours)]
        removed += len(entries) - len(kept)
        new_hooks[name] = kept
    if not spec_mode:
        new_hooks[stage] = [*(new_hooks.get(stage) or []), ours]
    if new_hooks == hooks:
        return spec, []
    if spec_mode:
        return {**spec, "hooks": new_hooks}, [
            f"hook: spec mode: removed {removed} stale or legacy hook entries"]
    notes = [f"hook: {stage} {ours['path']} {' '.join(ours['args'][1:])}"]
    stale = removed - (1 if ours in (hooks.get(stage) or []) else 0)
    if stale:
        notes.append(f"hook: removed {stale} stale or legacy hook entries")
    return {**spec, "hooks": new_hooks}, notes
