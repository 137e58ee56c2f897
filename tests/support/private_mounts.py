"""Run a test body in a forked child inside a private mount namespace, so the mounts it makes
(and any namespace it enters) vanish with the child and never reach the host."""

from __future__ import annotations

import os
import traceback
from typing import Callable

from spec_hook.mount_calls import private_namespace

__all__ = ["in_child", "private_namespace"]


def in_child(body: Callable[[], None], private: bool = True) -> None:
    """Run ``body`` in a forked child (in a private mount namespace unless told otherwise);
    re-raise its failure here as an AssertionError carrying the child's traceback."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        code = 0
        try:
            if private:
                private_namespace()
            body()
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        report = stream.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError(f"in the child:\n{report}")
