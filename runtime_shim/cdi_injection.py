"""Recognise a config.json into which the engine already injected NVIDIA devices from a CDI spec
(containerd, CRI-O, podman ``--device nvidia.com/gpu=0``, a Kubernetes DRA claim), README
§Beside CDI and DRA.

Pure: reads the spec only. The evidence, any one of which is enough:

- a ``linux.devices`` entry ``/dev/nvidia<N>`` (a GPU) or another ``/dev/nvidia*`` node, type
  ``c``, major 195 (the NVIDIA driver's character major): the engine created the node;
- an annotation ``cdi.k8s.io/<name>``, which engines write for the CDI devices they inject;
- a mount whose destination is a ``libcuda.so*`` or ``libnvidia-ml.so*`` file: the driver is
  already mounted.

Only device entries say which GPUs the container has (their minor numbers, which
``Injection.gpu_minors`` keeps for NUMA placement). Annotations come from wherever the engine
copied them (an image's labels included), so they may only make the shim do less, never make a
container count as having a GPU: ``Injection.gpus_present`` is false for them.

A spec that already carries our own hook is not an injection: it is the shim's own earlier edit
of this bundle (a retried create), whose nodes the devices modifier declared. In spec mode that
is the ``gpu-container-spec-hook`` entry the shim wrote, told by the ``SPEC_MARK`` in its
``env``: the same hook in a CDI spec (``gpu-ctk cdi generate`` emits it) comes without it, and
its container is an injection like any other.
"""

import re
from collections.abc import Collection
from typing import Any, NamedTuple, Optional

from gpu_core import spec_hook_entry

NVIDIA_MAJOR = 195
"""The NVIDIA driver's character-device major (``/dev/nvidia<N>``, ``nvidiactl``,
``nvidia-modeset``); ``nvidia-uvm`` and ``nvidia-caps`` get dynamic majors."""

CDI_ANNOTATION_PREFIX = "cdi.k8s.io/"
DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-ml.so")
_GPU_NODE = r"/dev/nvidia(\d{1,4})"  # matched through re's cache: compiled on first use
_OUR_HOOK = "gpu-container-hook"
_OUR_SPEC_HOOK = spec_hook_entry.NAME
SPEC_MARK = "GPU_CONTAINER_SHIM_EDIT=spec-mode"
"""The ``env`` entry that marks a spec-hook entry as written by the shim itself (spec mode)."""


class Injection(NamedTuple):
    """What the engine already put into the spec."""

    gpu_minors: tuple[int, ...]
    """Minor numbers of the ``/dev/nvidia<N>`` nodes declared, in spec order, each once."""
    evidence: tuple[str, ...]
    """What gave it away, for notes: ``/dev/nvidia0 (195:0)``, ``annotation cdi.k8s.io/x``."""

    @property
    def gpus_present(self) -> bool:
        """Whether the engine gave GPU nodes (the only evidence that counts as having a GPU)."""
        return bool(self.gpu_minors)

    def describe(self) -> str:
        """``/dev/nvidia0, /dev/nvidia2`` or, without GPU nodes, the first evidence."""
        if self.gpu_minors:
            return ", ".join(f"/dev/nvidia{minor}" for minor in self.gpu_minors)
        return self.evidence[0]


def detect(spec: Any, hook_paths: Collection[str] = ()) -> Optional[Injection]:
    """The injection ``spec`` carries; None when it carries none (or carries our hook, whose
    path may also be one of ``hook_paths``)."""
    if not isinstance(spec, dict) or _has_our_hook(spec.get("hooks"), hook_paths):
        return None
    minors: list[int] = []
    evidence: list[str] = []
    linux = spec.get("linux")
    entries = linux.get("devices") if isinstance(linux, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        node = _nvidia_node(entry)
        if node is None:
            continue
        path, minor = node
        evidence.append(f"{path} ({NVIDIA_MAJOR}:{minor})")
        if re.fullmatch(_GPU_NODE, path, re.ASCII) and minor not in minors:
            minors.append(minor)
    annotations = spec.get("annotations")
    if isinstance(annotations, dict):
        evidence += sorted(f"annotation {key}" for key in annotations
                           if isinstance(key, str) and key.startswith(CDI_ANNOTATION_PREFIX))
    mounts = spec.get("mounts")
    for mount in mounts if isinstance(mounts, list) else ():
        target = mount.get("destination") if isinstance(mount, dict) else None
        if isinstance(target, str) and \
                target.rsplit("/", 1)[-1].startswith(DRIVER_LIBRARIES):
            evidence.append(f"mount {target}")
    if not evidence:
        return None
    return Injection(gpu_minors=tuple(minors), evidence=tuple(evidence))


def _nvidia_node(entry: Any) -> Optional[tuple[str, int]]:
    """(path, minor) of a ``linux.devices`` entry for an NVIDIA driver node, else None."""
    if not isinstance(entry, dict):
        return None
    path, major, minor = entry.get("path"), entry.get("major"), entry.get("minor")
    if not isinstance(path, str) or not path.startswith("/dev/nvidia") or \
            entry.get("type") != "c" or major != NVIDIA_MAJOR or isinstance(major, bool):
        return None
    if not isinstance(minor, int) or isinstance(minor, bool) or not 0 <= minor < 1 << 20:
        return None
    return path, minor


def _has_our_hook(hooks: Any, hook_paths: Collection[str]) -> bool:
    if not isinstance(hooks, dict):
        return False
    for entries in hooks.values():
        for entry in entries if isinstance(entries, list) else ():
            if _is_ours(entry, hook_paths):
                return True
    return False


def _is_ours(entry: Any, hook_paths: Collection[str]) -> bool:
    path = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(path, str):
        return False
    name = path.rsplit("/", 1)[-1]
    if path in hook_paths or name == _OUR_HOOK:
        return True
    env = entry.get("env")
    return name == _OUR_SPEC_HOOK and isinstance(env, list) and SPEC_MARK in env
