"""The low-level runtime (runc or crun) we hand every call to, behind one object."""

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple, NoReturn, Optional

from gpu_core.errors import ShimError


class LowLevelRuntime(NamedTuple):
    """A located runtime binary; ``exec`` replaces this process with it."""

    path: str

    def exec(self, args: Sequence[str]) -> NoReturn:
        """Exec the runtime with ``args``; returning from exec is always an error."""
        try:
            os.execv(self.path, [self.path, *args])
        except OSError as exc:
            raise ShimError("runtime", f"exec {self.path}: {exc.strerror or exc}") from None
        raise ShimError("runtime", f"exec {self.path} returned")  # pragma: no cover


def is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find(candidates: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> LowLevelRuntime:
    """The first candidate found as an absolute path or on PATH."""
    env = os.environ if environ is None else environ
    search = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p]
    for name in candidates:
        if os.path.isabs(name):
            if is_executable(name):
                return LowLevelRuntime(name)
            continue
        if "/" in name:
            continue
        for directory in search:
            path = os.path.join(directory, name)
            if is_executable(path):
                return LowLevelRuntime(path)
    raise ShimError("runtime", "no low-level runtime found: tried "
                    + ", ".join(candidates) + " (config key runtimes) on PATH=" + ":".join(search))
