"""``gpu-container-runtime``: a runc-compatible command line.

``create`` and ``run`` load config.json, run the modifier pipeline, write it back atomically
when something changed, then exec the low-level runtime. Every other command execs it at once,
importing nothing it does not need.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

from gpu_core import config as config_mod
from gpu_core.errors import ShimError, one_line
from runtime_shim import argv as argv_mod
from runtime_shim import fastpath, lowlevel

if TYPE_CHECKING:
    from gpu_core.inventory import Inventory
    from runtime_shim.context import Context

COMMAND = "gpu-container-runtime"


def build_context(spec: Mapping[str, Any], config: config_mod.Config, *, bundle: str,
                  container_id: str, systemd_cgroup: bool, runtime: str = "",
                  root: Optional[str] = None) -> Context:
    """The Context the pipeline gets for one create: the request parsed from ``spec`` and this
    process's host facts. ``gpu-ctk plan`` builds its own through here, so it sees what the
    shim would."""
    from gpu_core.request import parse_request
    from runtime_shim import host
    from runtime_shim.cdi_injection import detect
    from runtime_shim.context import Context
    from runtime_shim.modifiers import mig_lease

    injected = detect(spec, (config.hook.path,))
    try:
        request = parse_request(spec, config)
    except ShimError:
        if injected is None:
            raise
        # The engine chose the devices; whatever NVIDIA_VISIBLE_DEVICES says (a CDI name our
        # spec dirs lack, say) selects nothing here (README §Beside CDI and DRA).
        request = None
    return Context(config=config, request=request, container_id=container_id,
                   host=host.read_facts(systemd_cgroup, runtime=runtime), bundle=bundle,
                   runtime_root=mig_lease.runtime_state_root(runtime, root), injected=injected)


def fault_point(config: config_mod.Config, name: str) -> None:
    """A test-only stop (``leases.faults.fault_point``: SIGKILL or sleep at ``name``), honoured
    only by a simulated host's configuration; production never imports the mechanism."""
    if config.simulation.dir:
        from leases.faults import fault_point as stop

        stop(name, True)


def timed_discovery(config: config_mod.Config, spent: list[float]) -> Callable[[], Inventory]:
    """The pipeline's discovery, its seconds appended to ``spent`` (the log's discovery_ms)."""
    def discover() -> Inventory:
        from gpu_core.discovery import discover_from_config

        began = time.monotonic()
        try:
            return discover_from_config(config)
        finally:
            spent.append(time.monotonic() - began)
    return discover


def log_create(log_file: str, level: str, invocation: argv_mod.Invocation, bundle: str,
               started: float, fields: Sequence[tuple[str, str]]) -> None:
    """Our log's one line per create: who, ``fields``, and the milliseconds since ``started``."""
    from gpu_core import logfile

    logfile.append(log_file, logfile.logfmt([
        ("time", logfile.timestamp()), ("level", level), ("cmd", invocation.command or ""),
        ("id", invocation.container_id or ""), ("bundle", bundle), *fields,
        ("duration_ms", f"{(time.monotonic() - started) * 1000:.1f}")]))


def prepare(invocation: argv_mod.Invocation, config: config_mod.Config,
            runtime: str = "") -> None:
    """Rewrite the bundle's config.json for a create/run (the slow path) for ``runtime``, the
    low-level runtime's path."""
    import contextlib

    from runtime_shim import bundle as bundle_mod
    from runtime_shim import pipeline, rootfs_guard

    started = time.monotonic()
    marks = [("", started)]  # (phase, when it ended): the log line's *_ms fields
    discovered: list[float] = []  # seconds in GPU discovery, which runs inside the modifiers

    def mark(phase: str) -> None:
        marks.append((phase, time.monotonic()))

    # runc chdirs into the bundle and joins root.path to its working directory: the physical
    # path (a symlinked one would make runc refuse the rootfs), so resolve links the same way.
    bundle = os.path.realpath(invocation.bundle or os.getcwd())
    log_file = config.log.file
    ctx: Optional[Context] = None
    extra_notes: list[str] = []  # spec mode's retries and readiness, for the log line
    try:
        loaded = bundle_mod.load_spec(bundle)
        rootfs_guard.check(loaded.spec, bundle)
        fault_point(config, "shim-after-load")
        mark("load")
        ctx = build_context(loaded.spec, config, bundle=bundle,
                            container_id=invocation.container_id or "",
                            systemd_cgroup=invocation.systemd_cgroup, runtime=runtime,
                            root=invocation.root)
        mark("request")
        ctx.discover = timed_discovery(config, discovered)
        is_gpu = ctx.gpu
        try:
            with contextlib.ExitStack() as stack:
                # spec mode: NVML held once, discovery retried, readiness waited for here
                # (runtime_shim.spec_create); imported only under ``mode: spec``
                spec_mode = config.mode == "spec" and ctx.request is not None and \
                    ctx.injected is None
                if spec_mode:
                    from runtime_shim import spec_create

                    session = stack.enter_context(spec_create.held(config))
                    ctx.discover = spec_create.retried(config, ctx.discover, session,
                                                       extra_notes.append)
                result = pipeline.run(loaded.spec, ctx)
                mark("modifiers")
                if spec_mode:
                    extra_notes.append(spec_create.wait_ready(config, ctx))
                    mark("readiness")
            fault_point(config, "shim-before-write")
            if result.changed:
                bundle_mod.write_spec(loaded, result.spec,
                                      lambda: fault_point(config, "shim-before-rename"))
            fault_point(config, "shim-after-write")
            mark("write")
        except ShimError:
            if ctx.container_id and ctx.lease is not None:  # MIG devices were leased
                ctx.lease_store().release(ctx.container_id, "failed-create")
            raise
    except ShimError as error:
        if log_file:  # the failed start in our log too, for gpu-ctk metrics and stats
            gpu = "unknown" if ctx is None else "yes" if ctx.gpu else "no"
            log_create(log_file, "error", invocation, bundle, started, [
                ("gpu", gpu), ("error_stage", error.stage),
                ("msg", one_line(f"{COMMAND}: {error.stage}: {error.cause}"))])
        raise
    if log_file:
        changes = "; ".join([*(note for _, notes in result.notes for note in notes),
                             *(note for note in extra_notes if note)]) or "none"
        spans = {phase: end - marks[n][1] for n, (phase, end) in enumerate(marks[1:])}
        if discovered:
            spans["modifiers"] -= sum(discovered)
            spans["discovery"] = sum(discovered)  # every attempt (spec mode retries)
        phases = [(f"{phase}_ms", f"{seconds * 1000:.1f}") for phase, seconds in spans.items()]
        log_create(log_file, "info", invocation, bundle, started, [
            ("gpu", "yes" if is_gpu else "no"),
            ("written", "yes" if result.changed else "no"), ("changes", changes), *phases])


def report(error: ShimError, invocation: argv_mod.Invocation) -> None:
    """One line on stderr, the same line in runc's --log file (containerd shows it)."""
    line = one_line(f"{COMMAND}: {error.stage}: {error.cause}")
    sys.stderr.write(line + "\n")
    if invocation.log_path:
        from runtime_shim import logs

        logs.to_runc_log(invocation.log_path, invocation.log_format, "error", line)


def delete_releasing(invocation: argv_mod.Invocation, config: config_mod.Config,
                     runtime: lowlevel.LowLevelRuntime, args: Sequence[str]) -> Optional[int]:
    """``delete`` of a container holding MIG leases: run the runtime as a child, then release
    the leases if the runtime no longer knows the container. None (exec as usual) for every
    other container, which costs one stat."""
    cid = invocation.container_id or ""
    lease_dir = config.mig.lease_dir
    if not cid or "/" in cid or cid in (".", "..") or not lease_dir:
        return None
    try:
        os.stat(os.path.join(lease_dir, cid + ".json"))
    except (OSError, ValueError):
        return None
    import subprocess

    from leases.release import release

    code = subprocess.call([runtime.path, *args])
    try:
        release(lease_dir, cid, "delete")
    except ShimError as error:
        report(error, invocation)  # the delete itself happened: keep its exit status
    return 128 - code if code < 0 else code  # killed by signal N: exit 128+N, as a shell says


def about_request(invocation: argv_mod.Invocation) -> str:
    """``version`` or ``help`` when runc would print its version or help (``--version``/``-v``,
    ``--help``/``-h`` among the global flags as Go's flag rules read them, or ``help`` as the
    command); else ``""``."""
    if invocation.command == "help":
        return "help"
    if invocation.command:  # an empty word as the command is no command (as the launcher sees)
        return ""
    return invocation.about


def load_config(invocation: argv_mod.Invocation) -> tuple[config_mod.Config, bool]:
    """The configuration in force, and whether it is. A pass-through command (``state``,
    ``kill``, ``delete`` ...) must reach the low-level runtime even when config.yaml is bad, or
    engines could not stop and clean up containers until someone fixes the file: it gets the
    defaults (runc, then crun) and a warning naming the problem. ``create``/``run`` fail closed."""
    try:
        return config_mod.load(), True
    except ShimError as error:
        if invocation.rewrites:
            raise
        line = one_line(f"{COMMAND}: warning: {error.stage}: {error.cause}; passing "
                        f"{invocation.command or 'the call'} to the default runtime")
        sys.stderr.write(line + "\n")
        if invocation.log_path:
            from runtime_shim import logs

            logs.to_runc_log(invocation.log_path, invocation.log_format, "warning", line)
        fallback = config_mod.defaults()
        log_file = fallback.log.file  # the file's own choice is unreadable
        if log_file:
            from gpu_core import logfile

            logfile.append(log_file, logfile.logfmt([
                ("time", logfile.timestamp()), ("level", "warning"),
                ("cmd", invocation.command or ""), ("id", invocation.container_id or ""),
                ("event", "config-invalid"), ("note", line)]))
        return fallback, False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    invocation = argv_mod.parse(args)
    if invocation.ambiguous:  # runc builds disagree on the bundle or id: run nothing
        report(ShimError("argv", f"{invocation.command}: runc builds read these arguments "
                                 f"differently (urfave/cli 1.22.1 and 1.22.9 reorder them); "
                                 f"put the flags before the container id"), invocation)
        return 1
    asked = about_request(invocation)
    if asked:
        from gpu_core import about

        # ours first, then the runtime's lines unchanged (engines parse `runc --version`)
        sys.stdout.write(about.version_line(COMMAND) + "\n" if asked == "version"
                         else about.RUNTIME_HELP)
        sys.stdout.flush()
    try:
        config, valid = load_config(invocation)
        if valid:
            fastpath.remember(config)  # lets the shell launcher skip Python next time
        runtime = lowlevel.find(config.runtimes)
        if invocation.rewrites:
            prepare(invocation, config, runtime.path)
        elif invocation.command == "delete":
            code = delete_releasing(invocation, config, runtime, args)
            if code is not None:
                return code
        runtime.exec(args)
    except ShimError as error:
        report(error, invocation)
        return 1
    return 1  # pragma: no cover - exec never returns


if __name__ == "__main__":
    sys.exit(main())
