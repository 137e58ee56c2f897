"""``gpu-container-hook``: the OCI hook that gives a GPU container its driver and devices.

``prestart`` (or ``createRuntime``) reads the container state on stdin, loads the bundle's
config.json, computes the request with the shim's own parser and, for a GPU container:
discovery and selection -> ``NVIDIA_REQUIRE_*`` -> readiness wait -> libnvidia-container
(or its CLI) under the retry policy. A non-GPU container exits 0 at once, having imported
neither jsonschema nor pynvml nor cffi. ``poststart`` is an accepted no-op; ``poststop``
releases the container's MIG leases (``hook.lease_hooks``).

Every failure is one line on stderr, ``gpu-container-hook: <stage> error: <cause>`` (runc
shows it after ``error running hook #0:``), and the same line in our log with the timings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from gpu_core import about
from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from gpu_core.config import Config
    from gpu_core.inventory import Inventory
    from gpu_core.logfile import EventLog
    from gpu_core.request import DeviceRequest
    from gpu_core.retry import RetryPolicy
    from gpu_core.selection import Selection
    from hook.bounded_child import Channel
    from hook.rootfs_identity import Pinned
    from hook.state import State

COMMAND = "gpu-container-hook"
WORK_STAGES = ("prestart", "createRuntime")
NOOP_STAGES = ("poststart", "poststop")
STATE_LIMIT = 1 << 20
"""Same bound as ``hook.state``: a state is a few hundred bytes plus annotations."""

MARGIN = 2.0
"""Seconds of the hook's timeout kept back to report a failure before the runtime kills us."""
MOUNT_RESERVE = 5.0
"""Seconds of the budget the readiness wait leaves for the library calls after it."""
KILL_MARGIN = 1.0
"""Seconds of the hook's timeout left when the library child is killed: enough to kill and
reap its processes and report, before the runtime kills the hook itself."""

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RISKY_PREFIXES = ("LD_", "PYTHON", "GCONV_", "MALLOC_", "NVC_")
"""Variables that change how a host process loads code: reported when dropped."""


class UsageError(ShimError):
    """The hook was invoked with arguments no runtime passes."""

    def __init__(self, cause: str) -> None:
        super().__init__("usage", cause)


@dataclass(frozen=True)
class Budget:
    """The hook entry's timeout as a deadline from the hook's start; every wait takes its
    share of what is left."""

    start: float
    total: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def remaining(self) -> float:
        return max(0.0, self.total - (self.clock() - self.start))


def usage(args: Sequence[str]) -> str:
    """The one stage argument, or UsageError."""
    stages = WORK_STAGES + NOOP_STAGES
    if len(args) != 1:
        raise UsageError(f"expected one argument, the hook stage ({', '.join(stages)}); "
                         f"got {len(args)}")
    if args[0] not in stages:
        raise UsageError(f"unknown stage {one_line(repr(args[0]), 80)}; expected "
                         f"{', '.join(stages)}")
    return args[0]


def read_input(stream: IO[bytes], limit: int = STATE_LIMIT) -> bytes:
    """Everything on stdin up to ``limit`` bytes (runtimes close it after the state)."""
    try:
        data = stream.read(limit + 1)
    except OSError as exc:
        raise ShimError("state", f"cannot read stdin: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ShimError("state", f"input larger than {limit} bytes")
    return data


def peek_bundle(data: bytes) -> Optional[tuple[str, str]]:
    """(bundle, id) from a state that looks right, without the schema: enough to decide whether
    this is a GPU container at all. None sends the input to full validation, which names the
    problem."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    bundle, container_id = document.get("bundle"), document.get("id")
    if not isinstance(bundle, str) or not bundle.startswith("/") or "\x00" in bundle:
        return None
    return bundle, container_id if isinstance(container_id, str) else ""


def isolate_environment(environ: Optional[dict[str, str]] = None) -> list[str]:
    """Reduce the environment to PATH before any library loads or forks: runc already gives us
    only the entry's ``env``, but a hook registered elsewhere (podman hooks.d) may not. Returns
    the names of loader-relevant variables that were dropped, for the log."""
    env: Any = os.environ if environ is None else environ
    dropped = sorted(key for key in env if key.startswith(RISKY_PREFIXES))
    env.clear()
    env["PATH"] = SAFE_PATH
    return dropped


def cli_devices(request: DeviceRequest, selection: Selection) -> tuple[str, ...]:
    """``--device`` values for the CLI: what the selection resolved (MIG profiles the shim
    leased are UUIDs by now); the CLI adds MIG parents itself."""
    if request.wants_all:
        return ("all",)
    return tuple(g.uuid for g in selection.gpus) + tuple(m.uuid for m in selection.mig_devices)


class Run:
    """One hook process: the stages in order, each logged once the configuration names the log
    (``log`` stays None until then, and for a non-GPU container)."""

    def __init__(self, started: float, clock: Callable[[], float] = time.monotonic,
                 environ: Optional[dict[str, str]] = None) -> None:
        self.started = started
        self.clock = clock
        self.environ = environ
        """The environment to isolate before the library loads; None is ``os.environ``."""
        self.log: Optional[EventLog] = None
        self.inventory: Optional[Inventory] = None
        """What discovery found, once ``configure`` ran (the standalone hook reuses it)."""
        self.state: Optional[State] = None
        """The parsed OCI state (``state_of``)."""
        self.discovery_ms = ""
        """How long discovery took, for the ``readiness`` log line (``gpu-ctk metrics``)."""

    def event(self, event: str, level: str = "info", **fields: str) -> None:
        if self.log is not None:
            self.log.event(event, level, **fields)

    def state_of(self, data: bytes) -> State:
        """The OCI state on stdin, parsed once per run (the non-GPU exit peeks without it)."""
        if self.state is None:
            from hook.state import parse_state

            self.state = parse_state(data)
        return self.state

    def retry_log(self, line: str) -> None:
        self.event("retry", level="warning", msg=line)

    def prestart(self, stage: str, data: bytes) -> None:
        """The work stages; returns at once for a non-GPU container."""
        from gpu_core import config as config_mod
        from gpu_core.bundle import read_spec
        from gpu_core.request import parse_request

        config = config_mod.load()
        peeked = peek_bundle(data)
        if peeked is None:
            state = self.state_of(data)  # names the problem, or accepts what the peek did not
            peeked = (state.bundle, state.id)
        bundle, container_id = peeked
        spec = read_spec(bundle)
        request = parse_request(spec, config)
        if request is None:
            return
        from gpu_core.logfile import EventLog

        self.log = EventLog(config.log.file,
                            [("cmd", "hook"), ("stage", stage), ("id", container_id)],
                            self.started, self.clock)
        budget = Budget(start=self.started, total=float(config.hook.timeout),
                        clock=self.clock)
        self.configure(config, budget, data, spec, request)
        self.event("done", devices=",".join(request.devices) or "none")

    def configure(self, config: Config, budget: Budget, data: bytes, spec: Mapping[str, Any],
                  request: DeviceRequest) -> None:
        from gpu_core.bundle import rootfs_path

        state = self.state_of(data)
        if state.pid is None:
            raise ShimError("state", "pid: missing; the hook needs the container's process")
        from hook.container_pid import check_container_pid

        check_container_pid(state.pid)  # before anything could mount into a host process
        from hook import lease_hooks

        lease_hooks.prestart(config, state.id, state.pid)  # a MIG lease's sign of life
        from hook.preflight import host_ldconfig

        ldconfig = host_ldconfig(config)
        from hook import rootfs_identity

        # The rootfs runc mounted, held from here on: a later swap of its path changes nothing.
        pinned = rootfs_identity.pin(rootfs_path(spec, state.bundle), state.pid)
        try:
            self.prepare(config, budget, request, state.pid, pinned, ldconfig)
        finally:
            pinned.close()

    def prepare(self, config: Config, budget: Budget, request: DeviceRequest, pid: int,
                pinned: Pinned, ldconfig: str) -> None:
        from gpu_core.discovery import discover_from_config
        from gpu_core.nvml_query import nvml_held
        from gpu_core.selection import select
        from hook.preflight import check_requirements

        with nvml_held(config.nvml.library):
            began = self.clock()
            inventory = self.inventory = discover_from_config(config)
            self.discovery_ms = f"{(self.clock() - began) * 1000:.1f}"
            selection = select(request, inventory)
            check_requirements(request, inventory, selection)
            self.wait_ready(config, budget, selection)
        dropped = isolate_environment(self.environ)
        if dropped:
            self.event("environment", level="warning", dropped=",".join(dropped))
        self.mount(config, budget, request, selection, pid, pinned, ldconfig)

    def wait_ready(self, config: Config, budget: Budget, selection: Selection) -> None:
        from gpu_core.readiness import (
            NotReadyError,
            NvmlProbe,
            device_labels,
            fit_timeout,
            wait_ready,
        )

        labels = device_labels(selection)
        if not labels:
            return
        readiness = config.readiness
        timeout = fit_timeout(readiness.timeout, budget.remaining(), MARGIN,
                              MOUNT_RESERVE)
        try:
            with NvmlProbe(config.nvml.library) as probe:
                outcome = wait_ready(labels, probe, timeout, readiness.interval,
                                     clock=self.clock)
        except NotReadyError as error:
            self.event("readiness", level="error", outcome="timeout",
                       devices=str(len(labels)), polls=str(error.polls),
                       waited_ms=f"{error.elapsed * 1000:.1f}", deadline_s=f"{timeout:.1f}",
                       last="; ".join(f"{k}: {v}" for k, v in error.last.items()),
                       pending=",".join(error.last) or "-", discovery_ms=self.discovery_ms)
            raise
        self.event("readiness", outcome="ready", devices=str(outcome.devices),
                   polls=str(outcome.polls), waited_ms=f"{outcome.elapsed * 1000:.1f}",
                   waited_for=",".join(outcome.waited_for) or "-",
                   discovery_ms=self.discovery_ms)

    def bounded(self, work: Callable[[Channel], Mapping[str, str]], budget: Budget,
                what: str) -> dict[str, str]:
        """``work`` in a child that the hook's timeout always ends (hook.bounded_child)."""
        from hook.bounded_child import run_bounded

        done, leftover = run_bounded(work, budget.remaining() - KILL_MARGIN,
                                     log=self.retry_log, what=what, clock=self.clock)
        if leftover:
            self.event("leftover", level="warning", killed=str(leftover), what=what)
        return done

    def mount(self, config: Config, budget: Budget, request: DeviceRequest,
              selection: Selection, pid: int, pinned: Pinned, ldconfig: str) -> None:
        from gpu_core.retry import RetryPolicy
        from hook import mounts
        from hook.rootfs_identity import verify

        verify(pinned, pid)  # the readiness wait took time: the path must still lead there
        began = self.clock()
        settings = config.libnvidia_container
        policy = RetryPolicy.from_config(config.retry, budget.remaining(), MARGIN)
        library, cli, reason = mounts.library_or_cli(settings)
        if library is None:
            self.event("fallback", level="warning", cli=cli, reason=reason)
            self.mount_with_cli(config, budget, cli, request, selection, pid, pinned, ldconfig,
                                policy, began)
            return
        root = config.host.driver_root
        target = mounts.Target(pid=pid, rootfs=pinned.fd_path,
                               capabilities=request.capabilities)
        load_kmods = settings.load_kmods

        def work(channel: Channel) -> Mapping[str, str]:
            import libnvc_bindings

            channel.step("initialization")
            try:
                session = libnvc_bindings.Session(library, root=root, ldconfig=ldconfig)
            except libnvc_bindings.NvcError as error:
                raise ShimError("initialization", error.message) from None
            retrier = mounts.Retrier(policy, channel.log, clock=self.clock)
            mounted = mounts.configure(session, request, selection, target, load_kmods,
                                       mounts.Stepping(retrier, channel.step))
            return {**mounts.describe(mounted), **retrier.timings()}

        described = self.bounded(work, budget, "libnvidia-container")
        self.event("mounted", library=library.version_string, rootfs=pinned.path, **described,
                   library_ms=f"{(self.clock() - began) * 1000:.1f}")

    def mount_with_cli(self, config: Config, budget: Budget, cli: str, request: DeviceRequest,
                       selection: Selection, pid: int, pinned: Pinned, ldconfig: str,
                       policy: RetryPolicy, began: float) -> None:
        from hook import cli_fallback

        settings = config.libnvidia_container
        argv = cli_fallback.cli_argv(cli, cli_fallback.CliRequest(
            pid=pid, rootfs=pinned.fd_path, devices=cli_devices(request, selection),
            capabilities=request.capabilities, requirements=request.checked_requirements,
            mig_config=bool(request.mig_config), mig_monitor=bool(request.mig_monitor)),
            load_kmods=settings.load_kmods, ldconfig=ldconfig,
            driver_root=config.host.driver_root)

        def work(channel: Channel) -> Mapping[str, str]:
            channel.step("cli")
            cli_fallback.configure(argv, policy, channel.log, clock=self.clock,
                                   keep_fds=(pinned.fd,))
            return {}

        self.bounded(work, budget, "nvidia-container-cli")
        self.event("mounted", cli=cli, rootfs=pinned.path, argv=" ".join(argv),
                   library_ms=f"{(self.clock() - began) * 1000:.1f}")


def report(error: ShimError, run: Optional[Run]) -> None:
    """One line on stderr; the same line in our log when this run has one."""
    line = one_line(f"{COMMAND}: {error.stage} error: {error.cause}")
    sys.stderr.write(line + "\n")
    if run is not None:
        run.event("error", level="error", error_stage=error.stage, msg=line)


def main(argv: Optional[Sequence[str]] = None, run: Optional[Run] = None) -> int:
    """``run`` replaces the default ``Run`` (the standalone hook passes its own)."""
    run = Run(time.monotonic()) if run is None else run
    args = list(sys.argv[1:] if argv is None else argv)
    asked = about.about_flag(args)
    if asked:
        sys.stdout.write(about.version_line(COMMAND) + "\n" if asked == "version"
                         else about.HOOK_HELP)
        return 0
    try:
        stage = usage(args)
        data = read_input(sys.stdin.buffer)
        if stage in WORK_STAGES:
            run.prestart(stage, data)
        elif stage == "poststop":
            from hook import lease_hooks

            lease_hooks.poststop(data)  # releases the container's MIG leases, if any
    except UsageError as error:
        report(error, None)
        return 2
    except ShimError as error:
        report(error, run)
        return 1
    except Exception as error:  # the last resort still prints one line and logs it
        report(ShimError("internal", f"{type(error).__name__}: {error}"), run)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
