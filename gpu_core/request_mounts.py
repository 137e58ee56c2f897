"""Device requests spelled as mounts: ``/dev/null`` bound onto
``/var/run/nvidia-container-devices/<request>`` (README §Device requests), the form Kubernetes
device plugins use so an unprivileged pod cannot forge a request through its environment.

A request is a device token, ``cdi/<vendor>/<class>/<device>`` (or ``…/<class>=<device>``)
naming a CDI device, or ``imex/<channel>``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from gpu_core.errors import ShimError
from gpu_core.request_words import MAX_TOKEN_CHARS, MAX_TOKENS, shown

STAGE = "request"
SPEC_STAGE = "config.json"
DEVICE_LIST_ROOT = "/var/run/nvidia-container-devices"
IMEX_MOUNT_PREFIX = "imex/"
"""IMEX channel requests share the mount root (``imex/<channel>``); they are not GPUs."""
CDI_MOUNT_PREFIX = "cdi/"

_shown = shown


def _clean(path: str) -> str:
    """Lexical cleaning like Go's filepath.Clean (normpath keeps a leading ``//``)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def device_list_mounts(spec: Mapping[str, Any]) -> list[str]:
    """Every request spelled as a ``/dev/null`` mount under the device-list root (devices,
    ``cdi/…`` and ``imex/…``), in mount order, each destination counted once."""
    mounts = spec.get("mounts")
    if mounts is None:
        return []
    if not isinstance(mounts, list):
        raise ShimError(SPEC_STAGE, f"mounts: expected a list, got {type(mounts).__name__}")
    seen: set[str] = set()
    tokens: list[str] = []
    for i, mount in enumerate(mounts):
        # type() before isinstance(): an ABC check per mount dominates a 5 000-mount spec.
        if type(mount) is not dict and not isinstance(mount, Mapping):
            raise ShimError(SPEC_STAGE, f"mounts[{i}]: expected an object, got "
                                        f"{type(mount).__name__}")
        source, destination = mount.get("source"), mount.get("destination")
        if source is not None and type(source) is not str and not isinstance(source, str):
            raise ShimError(SPEC_STAGE, f"mounts[{i}].source: expected a string")
        if type(destination) is not str and not isinstance(destination, str):
            raise ShimError(SPEC_STAGE, f"mounts[{i}].destination: expected a string")
        # Cleaning never adds characters: a source without "null" cannot clean to /dev/null, and
        # skipping the cleaning keeps a 5 000-mount spec cheap.
        if source is None or "null" not in source or _clean(source) != "/dev/null":
            continue
        destination = _clean(destination)
        if destination in seen or not destination.startswith(DEVICE_LIST_ROOT):
            continue  # a plain prefix test, as the toolkit's (``…devices0`` asks for 0)
        seen.add(destination)
        token = destination[len(DEVICE_LIST_ROOT):].strip("/")
        if not token:
            continue
        if len(token) > MAX_TOKEN_CHARS:
            raise ShimError(STAGE, f"device-list mount: item longer than {MAX_TOKEN_CHARS} "
                                   f"characters: {_shown(token)}")
        tokens.append(token)
        if len(tokens) > MAX_TOKENS:
            raise ShimError(STAGE, f"device-list mounts: more than {MAX_TOKENS} items")
    return tokens


def mount_tokens(mounted: list[str]) -> list[str]:
    """Device tokens among the ``device_list_mounts`` (``cdi/<vendor>/<class>/<device>``
    spelled as a CDI name; IMEX channel mounts left out). As in the toolkit, a ``cdi/`` mount
    that spells no CDI name is skipped, and a comma in a mount name separates devices (the
    name reaches libnvidia-container's ``--device`` list as it is)."""
    tokens: list[str] = []
    for token in mounted:
        if token.startswith(IMEX_MOUNT_PREFIX):
            continue
        if token.startswith(CDI_MOUNT_PREFIX):
            from gpu_core.cdi_names import mount_name

            name = mount_name(token)
            if name is not None:
                tokens.append(name)
            continue
        tokens.extend(item for item in token.split(",") if item)
    if len(tokens) > MAX_TOKENS:
        raise ShimError(STAGE, f"device-list mounts: more than {MAX_TOKENS} items")
    return tokens
