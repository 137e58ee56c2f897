"""``gpu-ctk runtime configure|unconfigure``: point docker, containerd, CRI-O or podman at the
shim (podman: at the standalone hook), or take that back.

Reads the engine's files, asks the engine module (pure, ``ctk.configure``) for the new texts,
then shows them as a unified diff (``--dry-run``) or writes them atomically with a backup.
Running configure again changes nothing; unconfigure restores the admin's file byte for byte
when nothing else changed it meanwhile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from ctk.configure import DEFAULT_NAME, ENGINES, Settings, check_name, engine
from gpu_core.errors import ShimError

RUNTIME = "gpu-container-runtime"
PACKAGED_RUNTIME = "/usr/bin/gpu-container-runtime"
HOOK = "nvidia-container-runtime-hook"
PACKAGED_HOOK = "/usr/libexec/gpu-container-shim/nvidia-container-runtime-hook"
"""Our standalone hook itself: /usr/bin/nvidia-container-runtime-hook may be NVIDIA's."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    configure = actions.add_parser(
        "configure", help="add the shim as a runtime of an engine (podman: the hooks.d hook)")
    unconfigure = actions.add_parser("unconfigure", help="take out what configure added")
    for sub in (configure, unconfigure):
        sub.add_argument("--runtime", required=True, choices=list(ENGINES), metavar="ENGINE",
                         help=f"the engine: {', '.join(ENGINES)}")
        sub.add_argument("--config", metavar="PATH",
                         help="the engine's file (default: daemon.json, config.toml, "
                              "crio.conf.d/99-NAME.conf or the hooks.d file in /etc)")
        sub.add_argument("--runtime-name", metavar="NAME", default=DEFAULT_NAME,
                         help=f"the runtime's name in the engine (default: {DEFAULT_NAME})")
        sub.add_argument("--dry-run", action="store_true",
                         help="print the change as a unified diff; write nothing")
        place = sub.add_mutually_exclusive_group()
        place.add_argument("--drop-in", dest="drop_in", action="store_const", const=True,
                           help="containerd: a conf.d drop-in plus an import (default for "
                                "config version 3)")
        place.add_argument("--in-place", dest="drop_in", action="store_const", const=False,
                           help="containerd: edit the main file (default for version 2)")
    configure.add_argument("--set-as-default", action="store_true",
                           help="make it the engine's default runtime")
    configure.add_argument("--runtime-path", metavar="PATH",
                           help=f"the shim (default: {PACKAGED_RUNTIME}, else beside gpu-ctk, "
                                f"else on PATH)")
    configure.add_argument("--hook-path", metavar="PATH",
                           help=f"podman: the standalone hook (default: {PACKAGED_HOOK}, "
                                f"else beside gpu-ctk, else on PATH)")
    configure.add_argument("--shim-config", metavar="PATH",
                           help="podman: the hook's GPU_CONTAINER_SHIM_CONFIG (default: none, "
                                "/etc/gpu-container-shim/config.yaml)")


def installed(name: str, packaged: str) -> str:
    """Our program ``name``: where the packages put it, else beside the running gpu-ctk (a
    virtual environment), else on PATH; ``packaged`` when none exists yet."""
    candidates = [packaged, os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)]
    found = shutil.which(name)
    if found:
        candidates.append(os.path.abspath(found))
    return next((path for path in candidates if os.access(path, os.X_OK)), packaged)


def settings_from(args: argparse.Namespace) -> Settings:
    name = check_name(args.runtime_name)
    chosen = engine(args.runtime)
    if args.drop_in is not None and args.runtime != "containerd":
        raise ShimError("runtime", "--drop-in and --in-place apply to containerd only")
    if getattr(args, "set_as_default", False) and args.runtime == "podman":
        raise ShimError("runtime", "--set-as-default: podman has no default runtime to set "
                                   "(the hooks.d hook runs for every container)")
    for option in ("hook_path", "shim_config"):
        if getattr(args, option, None) and args.runtime != "podman":
            raise ShimError("runtime", f"--{option.replace('_', '-')} applies to podman only")
    runtime_path = getattr(args, "runtime_path", None) or installed(RUNTIME, PACKAGED_RUNTIME)
    hook_path = getattr(args, "hook_path", None) or installed(HOOK, PACKAGED_HOOK)
    for option, value in (("--runtime-path", runtime_path), ("--hook-path", hook_path)):
        if not os.path.isabs(value):
            raise ShimError("runtime", f"{option} {value!r}: must be an absolute path")
    shim_config = getattr(args, "shim_config", None)
    return Settings(engine=args.runtime,
                    config=os.path.abspath(args.config or chosen.default_config(name)),
                    runtime_path=runtime_path, hook_path=hook_path, name=name,
                    set_as_default=bool(getattr(args, "set_as_default", False)),
                    drop_in=args.drop_in,
                    shim_config=os.path.abspath(shim_config) if shim_config else None)


def run(args: argparse.Namespace) -> int:
    from ctk.configure import files
    from ctk.configure.changes import diff, plan_configure, plan_unconfigure

    settings = settings_from(args)
    chosen = engine(settings.engine)
    texts = files.read_all(chosen.paths(settings))
    restored: list[str] = []
    if args.action == "configure":
        changes = plan_configure(chosen, texts, settings)
        program = settings.hook_path if settings.engine == "podman" else settings.runtime_path
        if not os.access(program, os.X_OK):
            print(f"gpu-ctk: runtime: warning: {program} is not an executable file (yet)",
                  file=sys.stderr)
    else:
        backups = {path: files.read(files.backup_path(path))
                   for path in chosen.backed_up(settings)}
        changes = plan_unconfigure(chosen, texts, backups, settings)
        restored = [c.path for c in changes
                    if c.changed and c.after is not None and c.after == backups.get(c.path)]
    if args.dry_run:
        shown = "".join(diff(change) for change in changes)
        sys.stdout.write(shown or "no change\n")
        return 0
    for line in files.apply(changes, restored):
        print(line)
    if any(change.changed for change in changes):
        print(chosen.hint)
    return 0
