"""Read the bundle the runtime names in the state: its config.json and the rootfs it points at.

Read-only and bounded: the hook never writes the bundle (the shim did that before the runtime
started), and config.json is as untrusted as the image that shaped it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from hook.errors import ShimError, one_line

STAGE = "config.json"
LIMIT = 16 << 20
"""config.json carries env and mounts; megabytes are already absurd, 16 MiB is a hard stop."""


def read_spec(bundle: str, limit: int = LIMIT) -> dict[str, Any]:
    """The parsed ``<bundle>/config.json``; raise ShimError ``config.json: …``."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise ShimError(STAGE, one_line(f"{path}: {exc.strerror or exc}")) from None
    if len(data) > limit:
        raise ShimError(STAGE, f"{path}: larger than {limit} bytes")
    try:
        spec = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ShimError(STAGE, one_line(f"{path}: invalid JSON: {exc}", 300)) from None
    if not isinstance(spec, dict):
        raise ShimError(STAGE, f"{path}: expected an object, got {type(spec).__name__}")
    return spec


def rootfs_path(spec: Mapping[str, Any], bundle: str) -> str:
    """The host path of the container's root: ``root.path``, relative to the bundle unless
    absolute, as runc resolves it."""
    root = spec.get("root")
    path = root.get("path") if isinstance(root, Mapping) else None
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ShimError(STAGE, "root.path: expected a non-empty string")
    full = os.path.normpath(os.path.join(bundle, path))
    if full == "/":
        # libnvidia-container refuses it too: mounting the driver over the host's own root.
        raise ShimError(STAGE, "root.path: the host's / cannot be a container rootfs")
    return full
