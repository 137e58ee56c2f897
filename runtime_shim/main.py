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
from typing import TYPE_CHECKING, Any, Optional

from hook import config as config_mod
from hook.errors import ShimError, one_line
from runtime_shim import argv as argv_mod
from runtime_shim import fastpath, lowlevel

if TYPE_CHECKING:
    from runtime_shim.context import Context

COMMAND = "gpu-container-runtime"


def build_context(spec: Mapping[str, Any], config: config_mod.Config, *, bundle: str,
                  container_id: str, systemd_cgroup: bool, runtime: str = "",
                  root: Optional[str] = None) -> Context:
    """The Context the pipeline gets for one create: the request parsed from ``spec`` and this
    process's host facts. ``gpu-ctk plan`` builds its own through here, so it sees what the
    shim would."""
    from hook.request import parse_request
    from runtime_shim import host
    from runtime_shim.context import Context
    from runtime_shim.modifiers import mig_lease

    return Context(config=config, request=parse_request(spec, config), container_id=container_id,
                   host=host.read_facts(systemd_cgroup, runtime=runtime), bundle=bundle,
                   runtime_root=mig_lease.runtime_state_root(runtime, root))


def fault_point(config: config_mod.Config, name: str) -> None:
    """A test-only stop (``hook.lease_store.fault_point``: SIGKILL or sleep at ``name``), honoured
    only by a simulated host's configuration; production never imports the mechanism."""
    if config.section("simulation").get("dir"):
        from hook.lease_store import fault_point as stop

        stop(name, True)


def prepare(invocation: argv_mod.Invocation, config: config_mod.Config,
            runtime: str = "") -> None:
    """Rewrite the bundle's config.json for a create/run (the slow path) for ``runtime``, the
    low-level runtime's path."""
    from hook import logfile
    from runtime_shim import bundle as bundle_mod
    from runtime_shim import pipeline, rootfs_guard
    from runtime_shim.modifiers import mig_lease

    started = time.monotonic()
    # runc chdirs into the bundle and joins root.path to its working directory: the physical
    # path (a symlinked one would make runc refuse the rootfs), so resolve links the same way.
    bundle = os.path.realpath(invocation.bundle or os.getcwd())
    loaded = bundle_mod.load_spec(bundle)
    rootfs_guard.check(loaded.spec, bundle)
    fault_point(config, "shim-after-load")
    ctx = build_context(loaded.spec, config, bundle=bundle,
                        container_id=invocation.container_id or "",
                        systemd_cgroup=invocation.systemd_cgroup, runtime=runtime,
                        root=invocation.root)
    request = ctx.request
    try:
        result = pipeline.run(loaded.spec, ctx)
        fault_point(config, "shim-before-write")
        if result.changed:
            bundle_mod.write_spec(loaded, result.spec,
                                  lambda: fault_point(config, "shim-before-rename"))
        fault_point(config, "shim-after-write")
    except ShimError:
        if ctx.container_id and ctx.request is not request:  # MIG devices were leased
            from hook import lease_store

            lease_store.release_if_mine(mig_lease.lease_dir(ctx), ctx.container_id)
        raise
    log_file = str(config.section("log")["file"])
    if log_file:
        changes = "; ".join(note for _, notes in result.notes for note in notes) or "none"
        logfile.append(log_file, logfile.logfmt([
            ("time", logfile.timestamp()), ("level", "info"), ("cmd", invocation.command or ""),
            ("id", invocation.container_id or ""), ("bundle", bundle),
            ("gpu", "yes" if request is not None else "no"),
            ("written", "yes" if result.changed else "no"), ("changes", changes),
            ("duration_ms", f"{(time.monotonic() - started) * 1000:.1f}"),
        ]))


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
    lease_dir = str(config.section("mig")["lease_dir"])
    if not cid or "/" in cid or cid in (".", "..") or not lease_dir:
        return None
    try:
        os.stat(os.path.join(lease_dir, cid + ".json"))
    except (OSError, ValueError):
        return None
    import subprocess

    from hook import lease_store

    code = subprocess.call([runtime.path, *args])
    try:
        lease_store.release_if_stale(lease_dir, cid)
    except ShimError as error:
        report(error, invocation)  # the delete itself happened: keep its exit status
    return 128 - code if code < 0 else code  # killed by signal N: exit 128+N, as a shell says


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    invocation = argv_mod.parse(args)
    if invocation.ambiguous:  # runc builds disagree on the bundle or id: run nothing
        report(ShimError("argv", f"{invocation.command}: runc builds read these arguments "
                                 f"differently (urfave/cli 1.22.1 and 1.22.9 reorder them); "
                                 f"put the flags before the container id"), invocation)
        return 1
    try:
        config = config_mod.load()
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
