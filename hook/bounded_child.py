"""Run the hook's library work in a forked child that the hook's deadline always ends.

libnvidia-container (or its CLI) runs helpers as root: the host's ldconfig over the image, the
CLI and whatever it forks. An image can make them block (a FIFO where ldconfig reads its
configuration) or spin (an ``include`` loop), and an in-process call cannot be interrupted. So
the work runs in a child in a session of its own, the hook being its child subreaper: every
descendant that is orphaned comes back to the hook. At the deadline the hook SIGKILLs the
child's process group, then every process still below it (found through
``/proc/<pid>/task/*/children``), and reaps them all; a mount namespace a helper created dies with
its last process. The child reports over a pipe which step it is in, its retry log lines and the
result, so the one error line can name the step that overran.

The per-start cost is one fork and a pipe; the /proc walk happens only when something is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from gpu_core.errors import ShimError, one_line

PR_SET_CHILD_SUBREAPER = 36
MESSAGE_LIMIT = 1 << 16
"""Bytes of child messages kept before the result; more is a bug in the work, not data."""


class Channel:
    """The child's side of the pipe: one JSON object per line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, kind: str, value: Any) -> None:
        data = (json.dumps({kind: value}) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]

    def step(self, name: str) -> None:
        """The step now running; the deadline's error line names the last one sent."""
        self.send("step", name)

    def log(self, line: str) -> None:
        self.send("log", line)


def become_subreaper() -> None:
    """Make orphaned descendants children of this process (PR_SET_CHILD_SUBREAPER)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(error)}")


def children_of(pid: int, proc: str = "/proc") -> list[int]:
    """The live children of ``pid`` (all its threads'), from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"{proc}/{pid}/task/{task}/children", encoding="ascii") as listing:
                found += [int(word) for word in listing.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _kill(pid: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)


def sweep(proc: str = "/proc") -> int:
    """SIGKILL and reap every process below this one; returns how many were killed. Each kill
    orphans the victim's children onto us (the subreaper), so the loop ends when none is left."""
    me, killed = os.getpid(), set[int]()
    while True:
        for child in children_of(me, proc):
            _kill(child)
            killed.add(child)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return len(killed)
        except InterruptedError:
            continue


def _child(work: Callable[[Channel], Mapping[str, str]], write: int) -> None:
    channel = Channel(write)
    try:
        os.setsid()
        channel.send("done", dict(work(channel)))
    except ShimError as error:
        channel.send("error", [error.stage, error.cause])
    except BaseException as error:  # the parent still gets one line naming it
        channel.send("error", ["internal", one_line(f"{type(error).__name__}: {error}")])
    finally:
        os._exit(0)


class Reader:
    """The parent's side: lines from the child until its result or the deadline."""

    def __init__(self, fd: int, log: Callable[[str], None]) -> None:
        self.fd = fd
        self.log = log
        self.buffer = b""
        self.step = "start"
        self.result: Optional[dict[str, Any]] = None
        self.eof = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer and self.result is None:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            if "step" in message:
                self.step = str(message["step"])
            elif "log" in message:
                self.log(str(message["log"]))
            else:
                self.result = message
        if len(self.buffer) > MESSAGE_LIMIT:
            raise ShimError("internal", "the library child sent an oversized message")

    def until(self, deadline: float, clock: Callable[[], float]) -> bool:
        """Read until the result (True), end of file or the deadline (False)."""
        while self.result is None:
            left = deadline - clock()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            data = os.read(self.fd, 65536)
            if not data:
                self.eof = True
                return False
            self.feed(data)
        return True


def run_bounded(work: Callable[[Channel], Mapping[str, str]], timeout: float, *,
                log: Callable[[str], None], what: str,
                clock: Callable[[], float] = time.monotonic) -> tuple[dict[str, str], int]:
    """Run ``work`` in a child for at most ``timeout`` seconds; return its result and how many
    leftover processes had to be killed after it. Raise the child's ShimError, or
    ``<step> error: … did not finish within …`` when the deadline ends it."""
    timeout = max(0.0, timeout)
    deadline = clock() + timeout
    become_subreaper()
    read, write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read)
        _child(work, write)
    os.close(write)
    reader = Reader(read, log)
    try:
        reader.until(deadline, clock)
    finally:
        os.close(read)
    if reader.result is None:
        _kill(pid, group=True)
        _kill(pid)
        killed = sweep()
        if reader.eof:
            raise ShimError(reader.step, f"{what} ended without a result")
        raise ShimError(reader.step, f"{what} did not finish within {timeout:.1f}s of the "
                                     f"hook's timeout; killed {killed} process(es)")
    os.waitpid(pid, 0)
    leftover = sweep()
    if "error" in reader.result:
        stage, cause = reader.result["error"]
        raise ShimError(str(stage), str(cause))
    done = reader.result.get("done") or {}
    return {str(k): str(v) for k, v in dict(done).items()}, leftover
