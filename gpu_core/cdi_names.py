"""CDI device names in a device request (``NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=2``), resolved
to device tokens through the CDI specs on this host (README §Device requests).

Only requests naming a CDI device pay for this: the request parser imports this module, and
YAML, only when a token holds ``=``. A name resolves when a spec in the configured directories
(``requests.cdi_spec_dirs``; later directories win, as in the CDI registry) defines it; the
device's name then is the token: ``all``, an index, ``GPU-<uuid>``, ``<gpu>:<mig>``,
``MIG-<uuid>`` (what ``gpu-ctk cdi generate`` and nvidia-ctk write), or nvidia-ctk's
``gpu<N>``/``mig<N>:<M>``. Specs that cannot be read or parsed are skipped, as the CDI registry
does; an unknown name is a one-line error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from gpu_core.errors import ShimError
from gpu_core.request_words import device_token_kind, shown

STAGE = "request"
SPEC_SUFFIXES = (".json", ".yaml", ".yml")
MAX_SPEC_BYTES = 4 << 20
"""A spec for a large host is tens of kilobytes; anything far larger is not read."""
MAX_SPECS = 256
GPU_CLASSES = ("gpu",)
"""Only GPUs can be named where GPUs are requested (``nvidia.com/imex-channel`` is not one)."""

_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# Matched through re's cache, each compiled on first use: most requests name no CDI device.
_NAME = rf"({_PART})/({_PART})=([A-Za-z0-9][A-Za-z0-9_.:-]*)"
_TYPE_INDEX = r"(?:gpu([0-9]{1,9})|mig([0-9]{1,9}:[0-9]{1,9}))"


def is_cdi_name(token: str) -> bool:
    """Whether a request token is meant as a CDI name (``vendor/class=device``)."""
    return "=" in token


def mount_name(token: str) -> Optional[str]:
    """The CDI name a device-list mount under ``cdi/`` spells (``cdi/nvidia.com/gpu/0`` or
    ``cdi/nvidia.com/gpu=0``), or None when it does not spell one."""
    rest = token[len("cdi/"):]
    if re.fullmatch(_NAME, rest, re.ASCII):
        return rest
    parts = rest.split("/", 2)
    return f"{parts[0]}/{parts[1]}={parts[2]}" if len(parts) == 3 else None


def parse_name(name: str) -> tuple[str, str, str]:
    """``nvidia.com/gpu=2`` -> ``("nvidia.com", "gpu", "2")``; a one-line error otherwise."""
    match = re.fullmatch(_NAME, name, re.ASCII)
    if match is None:
        raise ShimError(STAGE, f"invalid CDI device name {shown(name)}; expected "
                               "vendor/class=device such as nvidia.com/gpu=0")
    return match.group(1), match.group(2), match.group(3)


def device_token(device: str) -> Optional[str]:
    """The request token a GPU CDI device's name stands for, or None."""
    if device == "all":
        return "all"
    typed = re.fullmatch(_TYPE_INDEX, device, re.ASCII)
    if typed is not None:
        return typed.group(1) or typed.group(2)
    kind = device_token_kind(device)
    return device if kind in ("index", "gpu-uuid", "mig-uuid", "mig-index") else None


def _spec_files(dirs: Iterable[str]) -> list[str]:
    files: list[str] = []
    for directory in dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        files += [os.path.join(directory, n) for n in names if n.endswith(SPEC_SUFFIXES)]
    return files[:MAX_SPECS]


def _load(path: str) -> Any:
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_SPEC_BYTES:
        return None
    if path.endswith(".json"):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None
    import yaml

    # A safe loader either way (no Python tags), the C one when PyYAML was built with it.
    parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(data)
    try:
        return parser.get_single_data()
    except (yaml.YAMLError, ValueError, RecursionError):
        return None
    finally:
        parser.dispose()


def known_devices(dirs: Sequence[str]) -> dict[str, str]:
    """Every device the specs in ``dirs`` define: qualified name -> the spec file defining it
    (a later directory's spec wins)."""
    devices: dict[str, str] = {}
    for path in _spec_files(dirs):
        spec = _load(path)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("kind"), str):
            continue
        entries = spec.get("devices")
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                devices[f"{spec['kind']}={entry['name']}"] = path
    return devices


def resolve(names: Sequence[str], dirs: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, token)`` for each CDI name, in order; a one-line error for a malformed name, a
    device that is not a GPU, or one no spec defines."""
    parsed = [parse_name(name) for name in names]
    for name, (_, cls, _) in zip(names, parsed):
        if cls not in GPU_CLASSES:
            raise ShimError(STAGE, f"CDI device {shown(name)} is not a GPU (class {shown(cls)});"
                                   f" only class gpu can be requested here")
    defined = known_devices(dirs)
    resolved: list[tuple[str, str]] = []
    for name, (_, _, device) in zip(names, parsed):
        if name not in defined:
            where = ", ".join(dirs) or "no directory"
            raise ShimError(STAGE, f"unresolvable CDI device {shown(name)}: no CDI spec in "
                                   f"{shown(where, 200)} defines it (gpu-ctk cdi generate "
                                   "writes one)")
        token = device_token(device)
        if token is None:
            raise ShimError(STAGE, f"CDI device {shown(name)}: cannot tell which GPU it is; "
                                   "name GPUs by index, GPU-<uuid>, <gpu>:<mig> or MIG-<uuid>")
        resolved.append((name, token))
    return resolved
