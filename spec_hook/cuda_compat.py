"""CUDA forward compatibility, decided as data: whether the image's compat directory (the
cuda-compat package's ``/usr/local/cuda/compat``) holds a libcuda newer than the host driver, in
which case ldconfig is given that directory FIRST (ldconfig keeps the first command-line
directory's library for a name). Pure: the caller lists the directory inside the rootfs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Optional

DEFAULT_DIR = "/usr/local/cuda/compat"
# Matched through re's cache, each compiled on first use: only an image with compat libraries
# needs _LIBCUDA.
_LIBCUDA = r"libcuda\.so\.([0-9]+)\.([0-9]+)(?:\.[0-9]+)*"
_DRIVER = r"([0-9]+)(?:\.[0-9]+)*"


def driver_major(version: str) -> int:
    """The major of a driver version such as ``535.104.05``; ValueError for anything else."""
    match = re.fullmatch(_DRIVER, version)
    if match is None or len(version) > 64:
        raise ValueError(f"{version!r} is not a driver version like 535.104.05")
    return int(match.group(1))


def compat_major(name: str) -> Optional[int]:
    """The major of a compat library file name ``libcuda.so.<M>.<m>[...]``, else None."""
    match = re.fullmatch(_LIBCUDA, name)
    return int(match.group(1)) if match else None


def choose(directory: str, listing: Iterable[tuple[str, bool]], version: str) -> Optional[str]:
    """``directory`` when ``listing`` (name, is a regular file) holds a regular
    ``libcuda.so.<M>.<m>`` whose M exceeds the driver's major, else None. Symlinks and other
    non-regular entries never count: a link could name a file outside the rootfs."""
    host = driver_major(version)
    for name, regular in listing:
        major = compat_major(name)
        if regular and major is not None and major > host:
            return directory
    return None
