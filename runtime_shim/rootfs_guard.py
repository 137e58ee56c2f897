"""Refuse an image whose ``/dev`` is a symlink, before the low-level runtime follows it.

runc 1.1 resolves mount destinations inside the rootfs, but creates ``/dev/ptmx`` and the
``/dev/fd``, ``stdin``, ``stdout`` and ``stderr`` links through a plain join of the rootfs path
and ``dev/…`` before pivot_root: the kernel then follows an image's ``/dev`` symlink to wherever
it points on the host, and runc removes and creates files there (tests/adversarial shows it with
runc 1.1.5). No image needs ``/dev`` to be a symlink, since engines mount a tmpfs there, so the
shim refuses it with one line instead of letting the start write on the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gpu_core import oci_spec
from gpu_core.errors import ShimError, one_line

STAGE = "rootfs"
RUNTIME_WRITTEN = ("dev",)
"""Top-level image paths the runtime writes below by plain path joins."""


def rootfs_of(spec: Mapping[str, Any], bundle: str) -> str:
    """The rootfs host path as runc computes it (gpu_core.oci_spec.rootfs: the spec is runc's
    reading of config.json, the path cleaned as text), or "" when config.json names none usable
    (the runtime reports that itself)."""
    return oci_spec.rootfs(spec, bundle) or ""


def check(spec: Mapping[str, Any], bundle: str) -> None:
    """Raise ``rootfs: …`` when a path the runtime writes below is a symlink in the image."""
    rootfs = rootfs_of(spec, bundle)
    if not rootfs:
        return
    for name in RUNTIME_WRITTEN:
        try:
            target = os.readlink(os.path.join(rootfs, name))
        except OSError:  # absent, or not a symlink
            continue
        raise ShimError(STAGE, f"/{name} in the image is a symlink to "
                               f"{one_line(repr(target), 200)}; the low-level runtime would "
                               f"create files through it outside the rootfs")
