"""The container's ld cache, written by the HOST's ldconfig run in a jail of the rootfs.

Nothing from the image runs: the ldconfig binary is opened on the host before anything else
happens and must be a static ELF (no PT_INTERP: a dynamic one would load the image's ld.so, a
script the image's interpreter). A forked child starts a session of its own, chroots into the
rootfs fd (fchdir + chroot('.'), so the image's /etc/ld.so.conf, its ``include``s and a
/etc/ld.so.cache symlink all resolve inside the root), keeps only stdin on /dev/null and a
stderr pipe, and execs the binary by fd with an empty environment. At the deadline the whole
process group is killed: an image whose ld.so.conf is a FIFO or includes itself cannot hang
the container's start.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import struct
import time
from collections.abc import Sequence
from typing import Optional

from gpu_core.errors import ShimError, one_line

STAGE = "ldconfig"
PT_INTERP = 3
STDERR_LIMIT = 4096


def open_host(path: str) -> int:
    """An fd of the host's ldconfig, checked static; raise ShimError naming the problem. A
    leading ``@`` (NVIDIA's configuration marks a host path so, e.g. ``@/sbin/ldconfig.real``)
    means the same path."""
    path = path[1:] if path.startswith("@") else path
    if not path.startswith("/") or "\x00" in path:
        raise ShimError(STAGE, f"{path!r}: expected an absolute host path")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ShimError(STAGE, f"{path}: {exc.strerror}") from None
    try:
        problem = static_problem(fd)
    except OSError as exc:
        problem = exc.strerror or "unreadable"
    if problem:
        os.close(fd)
        raise ShimError(STAGE, f"{path}: {problem}")
    return fd


def static_problem(fd: int) -> str:
    """Why the file at ``fd`` is not a static ELF executable, or '' when it is one."""
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) and info.st_mode & 0o111):
        return "not an executable file"
    header = os.pread(fd, 64, 0)
    if len(header) < 52 or header[:4] != b"\x7fELF" or header[4] not in (1, 2) \
            or header[5] not in (1, 2):
        return "not an ELF executable"
    order = "<" if header[5] == 1 else ">"
    if header[4] == 2:  # ELF64
        phoff, = struct.unpack_from(order + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", header, 54)
    else:
        phoff, = struct.unpack_from(order + "I", header, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", header, 42)
    table = os.pread(fd, phentsize * phnum, phoff)
    if phentsize < 4 or len(table) != phentsize * phnum:
        return "not an ELF executable (truncated program headers)"
    for index in range(phnum):
        kind, = struct.unpack_from(order + "I", table, index * phentsize)
        if kind == PT_INTERP:
            return "a dynamic executable (PT_INTERP); the host ldconfig must be static"
    return ""


def arguments(directories: Sequence[str]) -> list[str]:
    """ldconfig's argv: the image's own configuration and cache, then our directories (the
    first command-line directory wins a library name, so the compat one goes first)."""
    return ["ldconfig", "-C", "/etc/ld.so.cache", "-f", "/etc/ld.so.conf", *directories]


def _unescape(field: str) -> str:
    """A mountinfo path: the kernel writes space, tab, newline and backslash as octal."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def procfs_mounts(mountinfo: str, root_path: str) -> list[str]:
    """The procfs mount points at or below ``root_path`` (container paths, outermost first,
    none below another), from /proc/self/mountinfo's text."""
    base = root_path.rstrip("/")
    inside: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        point, fstype = _unescape(fields[4]), line.split(" - ", 1)[1].split(" ", 1)[0]
        if fstype == "proc" and (point + "/").startswith(base + "/"):
            inside.append(point[len(base):] or "/")
    found: list[str] = []
    for point in sorted(set(inside), key=len):
        if not any((point + "/").startswith(outer.rstrip("/") + "/") for outer in found):
            found.append(point)
    return found


def cover_procfs(root: int) -> int:
    """Enter a mount namespace of our own and lay an empty read-only tmpfs over every procfs
    in the rootfs; return an fd of the rootfs in the new namespace (the one to chroot into,
    whose view has the covers). ``/proc/<pid>/root`` is a magic link to another process's root
    (the hook's is the host's) that a chroot does not stop: an image ld.so.conf naming
    ``/proc/<pid>/root/usr/lib`` would have ldconfig write links into a host directory."""
    from spec_hook import mount_calls, rootfs

    root_path = os.readlink(f"/proc/self/fd/{root}")
    mount_calls.private_namespace()
    here = os.open(root_path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not os.path.samestat(os.fstat(here), os.fstat(root)):
        raise OSError(f"{root_path} is no longer the rootfs")
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as stream:
        points = procfs_mounts(stream.read(), root_path)
    for point in points:
        fd = rootfs.open_in_root(here, point, os.O_PATH | os.O_DIRECTORY)
        try:
            if mount_calls.fs_magic(fd) == mount_calls.PROC_MAGIC:
                mount_calls.mount("tmpfs", fd, "tmpfs", mount_calls.LOCKED, "size=4k,mode=0555")
        finally:
            os.close(fd)
    return here


def _child(exe: int, root: int, argv: list[str], error: int) -> None:  # pragma: no cover
    """In the fork: jail, tidy the fds, exec. Never returns."""
    try:
        os.dup2(error, 2)  # from here every failure reaches the parent's error line
        os.setsid()
        keep = os.dup(exe) if exe < 3 else exe  # dup2 below must not close it
        null = os.open("/dev/null", os.O_RDWR)  # the host's, opened before the jail
        os.fchdir(cover_procfs(root))
        os.chroot(".")
        os.chdir("/")
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)
        os.execve(keep, argv, {})
    except BaseException as exc:
        os.write(2, one_line(f"{type(exc).__name__}: {exc}", 300).encode())
    os._exit(127)


def run(exe: int, root: int, directories: Sequence[str], deadline: float) -> None:
    """Run the host ldconfig ``exe`` jailed in ``root`` until ``deadline`` (time.monotonic);
    raise ShimError when it fails or overruns."""
    read, write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read)
        _child(exe, root, arguments(directories), write)
    os.close(write)
    try:
        status, stderr = _wait(pid, read, deadline)
    finally:
        os.close(read)
    if status is None:
        raise ShimError(STAGE, "did not finish before the hook's timeout; killed")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        detail = f": {one_line(lines[-1], 300)}" if lines else ""
        raise ShimError(STAGE, f"exited with status {code}{detail}")


def _wait(pid: int, stderr_fd: int, deadline: float) -> tuple[Optional[int], bytes]:
    """(wait status or None when killed at the deadline, the tail of its stderr). A pidfd
    says when it exits, so a fast ldconfig costs no polling."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # before Linux 5.3: poll instead
        pidfd = -1
    watched, stderr = [stderr_fd] + ([pidfd] if pidfd >= 0 else []), b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready = select.select(watched, [], [], left if pidfd >= 0 else min(left, 0.005))[0]
            if stderr_fd in ready:
                data = os.read(stderr_fd, STDERR_LIMIT)
                stderr = (stderr + data)[-STDERR_LIMIT:]
                if not data:
                    watched.remove(stderr_fd)
            if pidfd in ready or pidfd < 0:
                done, status = os.waitpid(pid, 0 if pidfd >= 0 else os.WNOHANG)
                if done:
                    if stderr_fd in watched and select.select([stderr_fd], [], [], 0)[0]:
                        stderr = (stderr + os.read(stderr_fd, STDERR_LIMIT))[-STDERR_LIMIT:]
                    return status, stderr
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # ldconfig and anything it started
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # in case it died before setsid made the group
    os.waitpid(pid, 0)
    return None, stderr
