"""Directories we keep state in as root, and when we trust one (README §Security and fault
hardening).

What sits in the config cache, the fast-path directory and the lease directory steers what runs
as root, so such a directory is ours only when it is a real directory (not a symlink), owned by
us and writable by nobody else, and no one else can swap it or a directory above it: every
ancestor is owned by root or us and not writable by others (a sticky ``/tmp`` is fine: others
cannot rename what is ours in it; a group-writable one owned by root is tolerated, as Ubuntu's
``/var/log`` is ``root:syslog 0775``). A directory someone else made first, or left loose, is
moved aside (renaming moves a symlink itself, never its target) and made again with an explicit
mode, whatever the umask. Every check is ``lstat``: nothing here follows a link at the end.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import Optional

OWN_ROOT = "/run/gpu-container-shim"
"""Ours: the config cache, the fast-path entry and the default lease directory live under it."""
MAX_LINKS = 8
"""Symlinked ancestors (``/var/run`` -> ``/run``) followed before giving up."""


class UntrustedError(OSError):
    """A directory we cannot trust and may not replace; ``str()`` says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem

    def __str__(self) -> str:
        return self.problem


def _owners() -> tuple[int, int]:
    return (0, os.geteuid())


def ancestor_problem(path: str, depth: int = 0) -> Optional[str]:
    """Why someone else could swap ``path`` or a directory above it (None when no one can).
    A missing component is no problem: whoever creates it later is checked then."""
    if depth > MAX_LINKS:
        return f"{path}: too many symlinks"
    current = "/"
    for part in os.path.abspath(path).split("/")[1:]:
        if not part:
            continue
        step = os.path.join(current, part)
        try:
            info = os.lstat(step)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"{step}: {exc.strerror or exc}"
        if info.st_uid not in _owners():
            return f"{step} is owned by uid {info.st_uid}, not root"
        if stat.S_ISLNK(info.st_mode):
            real = os.path.realpath(step)
            problem = ancestor_problem(real, depth + 1)
            if problem is not None:
                return problem
            current = real
            continue
        if not stat.S_ISDIR(info.st_mode):
            return f"{step} is not a directory"
        if info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX:
            return f"{step} is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
        if info.st_mode & 0o020 and info.st_uid != 0 and not info.st_mode & stat.S_ISVTX:
            return f"{step} is writable by group {info.st_gid}"
        current = step
    return None


def own_problem(path: str, info: os.stat_result) -> Optional[str]:
    """Why the directory ``path`` (lstat ``info``) is not ours, or None."""
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.geteuid():
        return f"{path} is owned by uid {info.st_uid}, not {os.geteuid()}"
    if info.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def trust_problem(path: str) -> Optional[str]:
    """Why the existing directory ``path`` cannot be trusted, or None when it can."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return own_problem(path, info) or ancestor_problem(os.path.dirname(os.path.abspath(path)))


def trusted(path: str) -> bool:
    return trust_problem(path) is None


def make_dir(path: str, mode: int) -> None:
    """``mkdir`` with exactly ``mode`` whatever the umask; FileExistsError when anything is there
    (``mkdir`` never follows a symlink at ``path``)."""
    os.mkdir(path, 0o700)  # the umask can only take bits away; the exact mode comes next
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_uid != os.geteuid():  # pragma: no cover - a rename race lost
            raise UntrustedError(f"{path} was replaced while it was being made")
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def make_parents(path: str, mode: int) -> None:
    """Make ``path`` and its missing parents, each with exactly ``mode``."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        # One made by a concurrent call is judged by the ancestor check that follows.
        with contextlib.suppress(FileExistsError):
            make_dir(directory, mode)


def ensure(path: str, mode: int = 0o700, own_root: str = "", parent_mode: int = 0o755
           ) -> list[str]:
    """Make ``path`` a directory of ours with ``mode``; one note per thing moved aside.

    Missing parents are made with ``parent_mode``. ``own_root`` names a directory above
    ``path`` that is ours as well (``/run/gpu-container-shim``): when it is not trustworthy it
    is moved aside too. Any other untrustworthy ancestor raises ``UntrustedError``: it is not
    ours to move.
    """
    path = os.path.abspath(path)
    notes: list[str] = []
    if own_root and path.startswith(own_root.rstrip("/") + "/"):
        parent = os.path.dirname(own_root.rstrip("/"))
        make_parents(parent, parent_mode)
        notes += ensure(own_root, parent_mode)
    parent = os.path.dirname(path)
    make_parents(parent, parent_mode)
    problem = ancestor_problem(parent)
    if problem is not None:
        raise UntrustedError(problem)
    try:
        info: Optional[os.stat_result] = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None:
        problem = own_problem(path, info)
        if problem is None:
            return notes
        aside = f"{path}.untrusted-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.rename(path, aside)
        notes.append(f"{problem}: moved aside to {aside}")
    try:
        make_dir(path, mode)
    except FileExistsError:
        problem = trust_problem(path)  # a concurrent call made it: fine when it is ours
        if problem is not None:
            raise UntrustedError(problem) from None
    return notes
