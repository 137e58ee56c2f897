"""The container's /proc/driver/nvidia: a read-only tmpfs of ours instead of the host's procfs
directory, as libnvidia-container makes it. It holds ``params`` with ``ModifyDeviceFiles: 0``
(so the driver's user-space never creates device nodes in the container: NCT's
disable-device-node-modification), the host's ``version`` and ``registry``, ``gpus/<BUSID>``
bound read-only from the host for each of the container's GPUs, and the MIG capability files
asked for with ``--proc-file`` (spec_hook.proc_files).

Host files are read before any namespace change (``read_host``); every container path is resolved
inside the rootfs and each mount(2) targets ``/proc/self/fd/N`` of an fd opened there, so an
image's symlink at /proc, /proc/driver or below never redirects a mount onto the host.
"""

import errno
import os
import re
from collections.abc import Sequence
from typing import NamedTuple, Optional

from gpu_core.errors import ShimError, one_line
from spec_hook import proc_files, rootfs
from spec_hook.mount_calls import (
    LOCKED,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_REMOUNT,
    PROC_MAGIC,
    fs_magic,
    mount,
)

STAGE = "proc driver"
CONTAINER_DIR = "/proc/driver/nvidia"
SEED_FILES = ("params", "version", "registry")
FILE_LIMIT = 1 << 16
# Matched through re's cache, each compiled on first use: a run without --proc-driver needs
# neither.
_BUSID = r"([0-9a-fA-F]{4}|[0-9a-fA-F]{8}):[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_MODIFY = rb"^(ModifyDeviceFiles:[ \t]*)[^\n]*$"


class HostProcDriver(NamedTuple):
    """What the host directory offers: seed file contents and the GPU entry names found."""

    directory: str
    files: dict[str, bytes]
    gpus: list[str]
    cap_files: tuple[proc_files.HostFile, ...] = ()


def busid_forms(busid: str) -> list[str]:
    """The names libnvidia-container tries for a PCI bus id: as given, then with the other
    domain width (NVML's 8 hex digits, the driver's procfs 4), each also in lower case."""
    if not re.fullmatch(_BUSID, busid):
        raise ValueError(f"{busid!r} is not a PCI bus id like 0000:07:00.0")
    domain, rest = busid.split(":", 1)
    other = f"0000{busid}" if len(domain) == 4 else (f"{domain[4:]}:{rest}"
                                                      if domain.startswith("0000") else busid)
    forms: list[str] = []
    for name in (busid, other, busid.lower(), other.lower()):
        if name not in forms:
            forms.append(name)
    return forms


def disable_modification(params: Optional[bytes]) -> bytes:
    """``params`` with ``ModifyDeviceFiles: 0`` (added when the host file lacks the line)."""
    text = params or b""
    if re.search(_MODIFY, text, re.MULTILINE):
        return re.sub(_MODIFY, rb"\g<1>0", text, flags=re.MULTILINE)
    return text + (b"" if not text or text.endswith(b"\n") else b"\n") + b"ModifyDeviceFiles: 0\n"


def _read(path: str) -> Optional[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, FILE_LIMIT)
    finally:
        os.close(fd)


def read_host(directory: str, busids: Sequence[str],
              rels: Sequence[str] = ()) -> HostProcDriver:
    """Read the host's seed files, find each GPU's entry (a GPU without one is skipped, as
    libnvidia-container skips it) and open each of ``rels`` (a missing one is an error: the
    container would have its capability node but could not find it)."""
    host = HostProcDriver(directory, {}, [])
    try:
        for name in SEED_FILES:
            data = _read(os.path.join(directory, name))
            if data is not None:
                host.files[name] = data
        for busid in busids:
            for name in busid_forms(busid):
                if os.path.isdir(os.path.join(directory, "gpus", name)):
                    host.gpus.append(name)
                    break
        host = host._replace(cap_files=tuple(proc_files.open_host(directory, rels)))
    except OSError as exc:
        raise ShimError(STAGE, one_line(f"{exc.filename or directory}: {exc.strerror}")) from None
    host.files["params"] = disable_modification(host.files.get("params"))
    return host


def _tmpfs_at(root: int, path: str) -> None:
    target = rootfs.open_in_root(root, path, os.O_PATH | os.O_DIRECTORY)
    try:
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555")
    finally:
        os.close(target)


def _lock(root: int, path: str, bind: bool) -> None:
    """Remount the mount now at ``path`` read-only, nosuid, nodev, noexec."""
    top = rootfs.open_in_root(root, path, os.O_PATH | os.O_DIRECTORY)
    try:
        mount(None, top, None, MS_REMOUNT | LOCKED | (MS_BIND if bind else 0))
    finally:
        os.close(top)


def _make_target(root: int) -> Optional[str]:
    """Make sure CONTAINER_DIR exists in the root; returns /proc/driver when it had to be
    covered by a tmpfs of ours first (a procfs without the driver cannot hold a directory)."""
    try:
        os.close(rootfs.open_in_root(root, CONTAINER_DIR, os.O_PATH | os.O_DIRECTORY))
        return None
    except FileNotFoundError:
        pass
    try:
        parent = rootfs.open_in_root(root, "/proc/driver", os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        os.close(rootfs.makedirs_in_root(root, CONTAINER_DIR, 0o555))
        return None
    try:
        covered = fs_magic(parent) == PROC_MAGIC
        if covered:
            _tmpfs_at(root, "/proc/driver")
            os.close(parent)
            parent = rootfs.open_in_root(root, "/proc/driver", os.O_PATH | os.O_DIRECTORY)
        os.mkdir("nvidia", 0o555, dir_fd=parent)
    finally:
        os.close(parent)
    return "/proc/driver" if covered else None


def _write(directory: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o444, dir_fd=directory)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _populate(root: int, host: HostProcDriver) -> None:
    top = rootfs.open_in_root(root, CONTAINER_DIR, os.O_PATH | os.O_DIRECTORY)
    try:
        for name, data in host.files.items():
            _write(top, name, data)
        if host.gpus:
            os.mkdir("gpus", 0o555, dir_fd=top)
    finally:
        os.close(top)
    for name in host.gpus:
        gpus = rootfs.open_in_root(root, CONTAINER_DIR + "/gpus", os.O_PATH | os.O_DIRECTORY)
        try:
            os.mkdir(name, 0o555, dir_fd=gpus)
        finally:
            os.close(gpus)
        source = os.open(os.path.join(host.directory, "gpus", name),
                         os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        target = rootfs.open_in_root(root, f"{CONTAINER_DIR}/gpus/{name}",
                                     os.O_PATH | os.O_DIRECTORY)
        try:
            mount(f"/proc/self/fd/{source}", target, None, MS_BIND)
        finally:
            os.close(source)
            os.close(target)
        _lock(root, f"{CONTAINER_DIR}/gpus/{name}", bind=True)


def install(root: int, host: HostProcDriver) -> None:
    """Make the container's /proc/driver/nvidia from ``host`` (see the module's text)."""
    try:
        covered = _make_target(root)
        _tmpfs_at(root, CONTAINER_DIR)
        _populate(root, host)
        proc_files.bind(root, CONTAINER_DIR, host.cap_files)
        _lock(root, CONTAINER_DIR, bind=False)
        if covered:
            _lock(root, covered, bind=False)
    except OSError as exc:
        what = exc.strerror or os.strerror(exc.errno or errno.EIO)
        raise ShimError(STAGE, one_line(f"{CONTAINER_DIR}: {what}")) from None
