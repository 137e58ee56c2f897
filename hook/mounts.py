"""Give one container its GPUs through libnvidia-container: options, plan, and the call sequence.

The sequence is the one ``nvidia-container-cli configure`` runs: ``nvc_init`` -> container ->
driver and device info -> driver mount -> device mount per GPU -> MIG capabilities -> ldcache ->
shutdown. What differs, and why:

- ``supervised``: the runtime supervises the container and gave us its pid (the CLI says
  ``supervised`` whenever ``--pid`` is passed).
- ``no-cgroups`` always: the shim declares every node in config.json so the runtime grants
  access (runtime_shim/modifiers/devices.py); device cgroup writes behind the runtime's back are
  exactly what systemd drops on ``daemon-reload``.
- devices are still bind-mounted (no ``no-devbind``): a node the runtime already created is
  simply covered by the host's, and a hook registered without the shim (podman hooks.d) still
  gets its nodes.
- which devices: the shim's own selection (``gpu_core.selection.select``), so the hook mounts
  exactly what the shim declared; a MIG device brings its parent GPU's node, as the CLI does.
- ``cuda-compat-mode=ldconfig`` from libnvidia-container 1.17.7 (the first release that knows
  it): CUDA forward compatibility by the ld cache alone (the image's newer
  ``/usr/local/cuda/compat`` first on ldconfig's command line) instead of the library's default
  of bind-mounting the image's compat libraries over the driver's (the CVE-2024-0132 path).
  Older releases are given no compat option and keep their own behaviour (README, Known gaps).

``plan`` and ``container_options`` are pure; ``configure`` drives a ``libnvc_bindings.Session``
with every call passed through the caller's retry runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, Optional, Protocol, TypeVar

from gpu_core.errors import ShimError, one_line
from gpu_core.retry import RetryError, RetryPolicy, run_with_retry

if TYPE_CHECKING:
    from gpu_core.request import DeviceRequest
    from gpu_core.selection import Selection
    from gpu_core.settings import LibnvcSettings
    from libnvc_bindings import DeviceInfo, Gpu, Library, MigDevice, Session

T = TypeVar("T")


class Retry(Protocol):
    """Runs one library call under the retry policy; ``stage`` names it in the error line."""

    def __call__(self, stage: str, fn: Callable[[], T]) -> T: ...

CAPABILITY_ORDER = ("compute", "compat32", "display", "graphics", "ngx", "utility", "video")
"""libnvidia-container's capability options, in the order we pass them (stable for logs)."""

ALWAYS = ("supervised", "no-cgroups")

COMPAT_LDCONFIG = "cuda-compat-mode=ldconfig"
COMPAT_LDCONFIG_SINCE = (1, 17, 7)
"""The first libnvidia-container release with ``cuda-compat-mode`` (older ones reject it as an
invalid option)."""


def library_or_cli(settings: LibnvcSettings) -> tuple[Optional[Library], str, str]:
    """The configured libnvidia-container as ``(library, "", "")``; when it cannot be loaded and
    ``nvidia-container-cli`` is configured, ``(None, cli, why the library did not load)``; a
    ``load`` error when neither. The hook and ``gpu-ctk plan`` decide the same way."""
    import libnvc_bindings

    try:
        return libnvc_bindings.load(settings.library), "", ""
    except libnvc_bindings.NvcLoadError as error:
        cli = settings.cli
        if not cli:
            raise ShimError("load", one_line(str(error).removeprefix("load: "))) from None
        return None, cli, one_line(str(error))


def container_options(capabilities: frozenset[str],
                      version: tuple[int, int, int]) -> tuple[str, ...]:
    """``nvc_container_new`` options for a container asking for ``capabilities``, given to
    libnvidia-container ``version``: forward compatibility through the ld cache where the
    release offers it."""
    compat = (COMPAT_LDCONFIG,) if tuple(version) >= COMPAT_LDCONFIG_SINCE else ()
    return ALWAYS + tuple(name for name in CAPABILITY_ORDER if name in capabilities) + compat


@dataclass(frozen=True)
class Plan:
    """What to mount, as the library's own device views (their handles feed the C calls)."""

    gpus: tuple[Gpu, ...]
    """Selected GPUs, then the parents of selected MIG devices not already there."""
    migs: tuple[MigDevice, ...]
    """MIG devices whose access capabilities are mounted (empty when global caps replace them)."""
    mig_config: tuple[Gpu, ...] = ()
    """MIG-capable visible GPUs whose caps are mounted for NVIDIA_MIG_CONFIG_DEVICES=all."""
    mig_monitor: tuple[Gpu, ...] = ()
    """Likewise for NVIDIA_MIG_MONITOR_DEVICES=all."""


def plan(request: DeviceRequest, selection: Selection, info: DeviceInfo) -> Plan:
    """Match the selection (NVML's view) to the library's devices by UUID.

    MIG config/monitor follow the CLI: with ``all`` the global capability is mounted plus each
    MIG-capable visible GPU's caps, and then per-device access caps are not needed.
    """
    gpus_by_uuid = {gpu.uuid.lower(): gpu for gpu in info.gpus}
    migs_by_uuid = {mig.uuid.lower(): mig for mig in info.mig_devices}
    missing: list[str] = []

    def gpu(uuid: str) -> Optional[Gpu]:
        found = gpus_by_uuid.get(uuid.lower())
        if found is None:
            missing.append(uuid)
        return found

    chosen: dict[str, Gpu] = {}
    for wanted in selection.checked_gpus:
        found = gpu(wanted.uuid)
        if found is not None:
            chosen.setdefault(found.uuid.lower(), found)
    migs: list[MigDevice] = []
    for wanted_mig in selection.mig_devices:
        found_mig = migs_by_uuid.get(wanted_mig.uuid.lower())
        if found_mig is None:
            missing.append(wanted_mig.uuid)
        else:
            migs.append(found_mig)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ShimError("detection", one_line(
            f"{missing[0]}{more}: NVML sees it but libnvidia-container does not"))
    visible = tuple(chosen.values())
    capable = tuple(g for g in visible if g.mig_capable)
    config = capable if request.mig_config else ()
    monitor = capable if request.mig_monitor else ()
    global_caps = bool(request.mig_config or request.mig_monitor)
    return Plan(gpus=visible, migs=() if global_caps else tuple(migs), mig_config=config,
                mig_monitor=monitor)


@dataclass(frozen=True)
class Target:
    """The container as the library needs it: its init process and a path to its root (the
    pinned descriptor's, hook.rootfs_identity)."""

    pid: int
    rootfs: str
    capabilities: frozenset[str]


def configure(session: Session, request: DeviceRequest, selection: Selection,
              target: Target, load_kmods: bool, retry: Retry) -> Plan:
    """Run the whole sequence; the session is shut down whatever happens. Returns the plan
    that was mounted (for the log)."""
    try:
        retry("initialization", partial(session.init, load_kmods=load_kmods))
        container = retry("container", partial(session.container, target.pid, target.rootfs,
                                               container_options(target.capabilities,
                                                                 session.library.version)))
        driver = retry("detection", session.driver_info)
        mounted = plan(request, selection, retry("detection", session.device_info))
        retry("mount", partial(session.driver_mount, container, driver))
        for gpu in mounted.gpus:
            retry("mount", partial(session.device_mount, container, gpu))
        for mig in mounted.migs:
            retry("mount", partial(session.mig_device_access_caps_mount, container, mig))
        if mounted.mig_config:
            retry("mount", partial(session.mig_config_global_caps_mount, container))
            for gpu in mounted.mig_config:
                retry("mount", partial(session.device_mig_caps_mount, container, gpu))
        if mounted.mig_monitor:
            retry("mount", partial(session.mig_monitor_global_caps_mount, container))
            for gpu in mounted.mig_monitor:
                retry("mount", partial(session.device_mig_caps_mount, container, gpu))
        retry("ldcache", partial(session.ldcache_update, container))
        return mounted
    finally:
        session.close()


def describe(mounted: Plan) -> dict[str, str]:
    """Log fields saying what was mounted: the GPUs and MIG devices by UUID."""
    fields = {"gpus": ",".join(g.uuid for g in mounted.gpus) or "-",
              "migs": ",".join(m.uuid for m in mounted.migs) or "-"}
    if mounted.mig_config:
        fields["mig_config"] = "all"
    if mounted.mig_monitor:
        fields["mig_monitor"] = "all"
    return fields


def retry_failure(error: RetryError, stage: str, cause: str) -> ShimError:
    """The hook's one error line when retrying ended: the last cause, then how many attempts
    over how long and what stopped them (nothing added for a first-attempt permanent error)."""
    if error.attempts == 1 and error.reason == "permanent error":
        return ShimError(stage, cause)
    noun = "attempt" if error.attempts == 1 else "attempts"
    return ShimError(stage, f"{cause} ({error.attempts} {noun} over {error.elapsed:.1f}s, "
                            f"stopped by {error.reason})")


def _nvc_transient(error: BaseException) -> bool:
    from libnvc_bindings import NvcError

    return isinstance(error, NvcError) and error.transient


def _cause(error: BaseException) -> str:
    from libnvc_bindings import NvcError

    return error.message if isinstance(error, NvcError) else one_line(str(error))


class Stepping:
    """A ``Retry`` that first reports the stage it enters (the bounded child's progress, so a
    deadline's error line names the step that overran), then runs ``retry``."""

    def __init__(self, retry: Retry, step: Callable[[str], None]) -> None:
        self.retry = retry
        self.step = step

    def __call__(self, stage: str, fn: Callable[[], T]) -> T:
        self.step(stage)
        return self.retry(stage, fn)


class Retrier:
    """The ``Retry`` the hook hands to ``configure``: one policy whose deadline runs from the
    first library call, shared by every call after it, so the whole sequence fits the budget
    the policy was fitted to."""

    def __init__(self, policy: RetryPolicy, log: Callable[[str], None], *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.start = clock()
        self.spent: dict[str, float] = {}
        """Seconds each stage took, retries included (the ``mounted`` log line's ``*_ms``)."""

    def __call__(self, stage: str, fn: Callable[[], T]) -> T:
        began = self.clock()
        left = self.policy.deadline - (began - self.start)
        policy = self.policy._replace(deadline=max(0.0, left))
        try:
            return run_with_retry(fn, policy, _nvc_transient, self.log, stage=stage,
                                  clock=self.clock, sleep=self.sleep)
        except RetryError as error:
            raise retry_failure(error, stage, _cause(error.last)) from None
        finally:
            self.spent[stage] = self.spent.get(stage, 0.0) + self.clock() - began

    def timings(self) -> dict[str, str]:
        """``<stage>_ms`` log fields for every stage called so far."""
        return {f"{stage}_ms": f"{seconds * 1000:.1f}" for stage, seconds in self.spent.items()}
