"""The host driver's files as libnvidia-container's ``nvc_driver_info_new`` reports them, read
without the library and without another NVML init (README §Spec mode).

The driver version comes from the inventory (NVML, read once by discovery); every other fact is
a ``stat`` under the driver root: the full-version file of each known library
(``gpu_core.driver_files.LIBRARY_CLASSES``) in the 64-bit and 32-bit library directories, the
known binaries on the standard ``PATH`` directories, the GSP firmware of this version and the
IPC paths of persistenced, fabric manager and MPS that exist. ``gpu_core.driver_files`` then
chooses among them by capabilities, as it does for the hook and ``gpu-ctk cdi generate``.
"""

import os
import stat
from collections.abc import Sequence
from typing import NamedTuple

from gpu_core.driver_files import BINARY_CLASSES, LIBRARY_CLASSES

LIB64_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib/x86_64-linux-gnu", "/lib64",
              "/usr/lib")
LIB32_DIRS = ("/usr/lib/i386-linux-gnu", "/usr/lib32", "/lib/i386-linux-gnu", "/lib32")
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
IPC_PATHS = ("/var/run/nvidia-persistenced/socket", "/var/run/nvidia-fabricmanager/socket",
             "/tmp/nvidia-mps")
FIRMWARE_DIR = "/lib/firmware/nvidia"
PROC_DRIVER = "/proc/driver/nvidia"


class HostDriver(NamedTuple):
    """The driver's files on the host (paths include the driver root), in the order and shape
    of libnvidia-container's driver info, so ``driver_files.mounts`` reads either."""

    nvrm_version: str
    bins: tuple[str, ...]
    libs: tuple[str, ...]
    libs32: tuple[str, ...]
    ipcs: tuple[str, ...]
    firmwares: tuple[str, ...]


def _prefix(driver_root: str) -> str:
    """The driver root as a prefix of absolute paths (``/`` -> ``""``)."""
    return os.path.normpath(driver_root).rstrip("/")


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def libraries(prefix: str, dirs: Sequence[str], version: str) -> tuple[str, ...]:
    """Each known library's ``<name>.<version>`` file (a regular file, not a link), from the
    first of ``dirs`` that has it, in the table's order."""
    found = []
    for name, _ in LIBRARY_CLASSES:
        for directory in dirs:
            path = f"{prefix}{directory}/{name}.{version}"
            if _is_regular(path):
                found.append(path)
                break
    return tuple(found)


def binaries(prefix: str) -> tuple[str, ...]:
    """Each known binary from the first standard ``PATH`` directory that has it."""
    found = []
    for name in BINARY_CLASSES:
        for directory in BIN_DIRS:
            path = f"{prefix}{directory}/{name}"
            if _exists(path):
                found.append(path)
                break
    return tuple(found)


def firmwares(prefix: str, version: str) -> tuple[str, ...]:
    """``gsp*.bin`` of this driver version, in directory order (as ``readdir`` gives them)."""
    directory = f"{prefix}{FIRMWARE_DIR}/{version}"
    try:
        names = os.listdir(directory)
    except (OSError, ValueError):
        return ()
    return tuple(f"{directory}/{name}" for name in names
                 if name.startswith("gsp") and len(name) >= 5 and name.endswith(".bin"))


def scan(driver_root: str, version: str) -> HostDriver:
    """The driver files of ``version`` under ``driver_root``."""
    prefix = _prefix(driver_root)
    if not version or "/" in version or version in (".", ".."):
        return HostDriver(version, (), (), (), (), ())
    return HostDriver(
        nvrm_version=version, bins=binaries(prefix),
        libs=libraries(prefix, LIB64_DIRS, version),
        libs32=libraries(prefix, LIB32_DIRS, version),
        ipcs=tuple(path for path in (prefix + ipc for ipc in IPC_PATHS) if _exists(path)),
        firmwares=firmwares(prefix, version))


def proc_driver(driver_root: str) -> str:
    """The host's ``/proc/driver/nvidia`` under the driver root."""
    return _prefix(driver_root) + PROC_DRIVER


def proc_gpu_name(proc_dir: str, bus_id: str) -> str:
    """The entry of ``proc_dir/gpus`` for the GPU at ``bus_id`` (NVML's form): tried as NVML
    writes it and with the 4-digit domain the driver's procfs uses, each also in lower case, as
    libnvidia-container tries them; '' when there is none."""
    short = bus_id[4:] if len(bus_id) > 4 else bus_id
    for name in dict.fromkeys((bus_id, short, bus_id.lower(), short.lower())):
        if "/" not in name and name not in ("", ".", "..") and \
                _exists(f"{proc_dir}/gpus/{name}"):
            return name
    return ""
