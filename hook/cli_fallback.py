"""Fall back to ``nvidia-container-cli configure`` when libnvidia-container cannot be loaded.

Hosts that ship only the CLI (or a library release our declarations refuse) still work when the
configuration names the CLI (``libnvidia_container.cli``). The arguments are the form operators
know from the NVIDIA hook; the run happens under the same retry policy, classified by the same
table as the library's messages, with a clean environment: nothing of the hook's own
environment (let alone the container's) reaches a root process on the host.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from gpu_core.errors import one_line
from gpu_core.retry import RetryError, RetryPolicy, run_with_retry
from hook.mounts import CAPABILITY_ORDER, retry_failure

CLEAN_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
"""The whole environment the CLI gets: it needs a PATH for nothing but its own messages."""

PREFIX = "nvidia-container-cli: "


@dataclass(frozen=True)
class CliRequest:
    """What one run of the CLI configures."""

    pid: int
    rootfs: str
    devices: tuple[str, ...]
    """Resolved device UUIDs, ``("all",)``, or empty for ``none`` (driver only)."""
    capabilities: frozenset[str]
    requirements: tuple[str, ...] = ()
    mig_config: bool = False
    mig_monitor: bool = False


def cli_argv(cli: str, request: CliRequest, *, load_kmods: bool, ldconfig: str,
             driver_root: str = "/") -> list[str]:
    """``CLI [--load-kmods] [--root=R] configure --no-cgroups --ldconfig=@L [--device=…]
    [--compute --utility …] [--require=…]… [--mig-config=all] [--mig-monitor=all] --pid=P
    ROOTFS``."""
    argv = [cli]
    if load_kmods:
        argv.append("--load-kmods")
    if driver_root not in ("", "/"):
        argv.append(f"--root={driver_root}")
    argv += ["configure", "--no-cgroups", f"--ldconfig={ldconfig}"]
    if request.devices:
        argv.append("--device=" + ",".join(request.devices))
    argv += [f"--{name}" for name in CAPABILITY_ORDER if name in request.capabilities]
    argv += [f"--require={text}" for text in request.requirements]
    if request.mig_config:
        argv.append("--mig-config=all")
    if request.mig_monitor:
        argv.append("--mig-monitor=all")
    argv += [f"--pid={request.pid}", request.rootfs]
    return argv


class CliError(Exception):
    """One failed CLI run; ``message`` is its last stderr line without the program prefix, and
    ``transient`` follows libnvidia-container's classification of that message."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


def failure_message(returncode: int, stderr: str) -> str:
    """The CLI's own error line (``initialization error: …``) without its program prefix, or
    the exit status when it printed nothing."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return f"exited with status {returncode} and no message"
    last = lines[-1]
    return one_line(last[len(PREFIX):] if last.startswith(PREFIX) else last, 500)


def run_cli(argv: Sequence[str], timeout: float, keep_fds: Sequence[int] = ()) -> None:
    """Run the CLI once with the clean environment, stdin closed, ``keep_fds`` inherited (the
    pinned rootfs its argv names as /proc/self/fd/N) and at most ``timeout`` seconds; raise
    CliError on failure. Its helpers are bounded by the hook (hook.bounded_child)."""
    from libnvc_bindings.classification import is_transient

    try:
        done = subprocess.run(list(argv), env=dict(CLEAN_ENV), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=max(timeout, 0.001), check=False, close_fds=True,
                              pass_fds=tuple(keep_fds))
    except subprocess.TimeoutExpired:
        raise CliError(f"timed out after {timeout:.1f}s", transient=False) from None
    except OSError as exc:
        raise CliError(f"cannot run {argv[0]}: {exc.strerror or exc}", transient=False) from None
    if done.returncode != 0:
        message = failure_message(done.returncode, done.stderr)
        raise CliError(message, transient=is_transient(message))


def _transient(error: BaseException) -> bool:
    return isinstance(error, CliError) and error.transient


def configure(argv: Sequence[str], policy: RetryPolicy, log: Callable[[str], None], *,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep,
              runner: Callable[..., None] = run_cli, keep_fds: Sequence[int] = ()) -> None:
    """Run the CLI until it succeeds or the policy gives up; each run may take what is left of
    the policy's deadline. Raise ShimError ``<CLI stage> error: <cause> (…)``."""
    start = clock()

    def attempt() -> None:
        runner(argv, policy.deadline - (clock() - start), keep_fds)

    try:
        run_with_retry(attempt, policy, _transient, log, stage="cli", clock=clock, sleep=sleep)
    except RetryError as error:
        last = error.last
        message = last.message if isinstance(last, CliError) else str(last)
        stage, cause = split_message(message)
        raise retry_failure(error, stage, f"{cause} (nvidia-container-cli)") from None


def stage_of(message: str) -> str:
    """The CLI's own stage word (``initialization``, ``mount`` …) when its message has one."""
    head, sep, _ = message.partition(" error: ")
    return head if sep and head.replace("-", "").isalpha() and len(head) <= 20 else "cli"


def split_message(message: str) -> tuple[str, str]:
    """(stage, cause) of the CLI's ``<stage> error: <cause>``; stage ``cli`` when it has none."""
    stage = stage_of(message)
    return (stage, message.split(" error: ", 1)[1]) if stage != "cli" else (stage, message)
