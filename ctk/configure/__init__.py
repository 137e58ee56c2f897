"""Engine configuration for ``gpu-ctk runtime configure|unconfigure``.

Each engine module (docker, containerd, crio, podman) is pure: file texts in, file texts out,
through the four functions of its ``ENGINE``. ``ctk.configure.changes`` turns two sets of texts
into changes and diffs; ``ctk.configure.files`` is the one place that reads and writes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

from gpu_core.errors import ShimError

Texts = dict[str, Optional[str]]
"""Path -> file content; None for a file that is absent (or, as a result, to be removed)."""

ENGINES: dict[str, str] = {
    "docker": "ctk.configure.docker",
    "containerd": "ctk.configure.containerd",
    "crio": "ctk.configure.crio",
    "podman": "ctk.configure.podman",
}
"""Engine name -> the module whose ``ENGINE`` edits its configuration."""

DEFAULT_NAME = "gpu"
MARKER = "gpu-ctk runtime configure"
"""Named in the header of every file we create, so a reader knows where it came from."""


@dataclass(frozen=True)
class Settings:
    """What the user asked for, with every default already resolved."""

    engine: str
    config: str
    """The file the engine reads: daemon.json, config.toml, a CRI-O drop-in, a hooks.d file."""
    runtime_path: str
    """Our shim, as the engine should run it."""
    hook_path: str
    """The standalone hook (podman hooks.d)."""
    name: str = DEFAULT_NAME
    set_as_default: bool = False
    drop_in: Optional[bool] = None
    """containerd: a conf.d drop-in (True) or the main file (False); None: by config version."""
    shim_config: Optional[str] = None
    """podman: ``GPU_CONTAINER_SHIM_CONFIG`` for the hook, when not the default path."""


@dataclass(frozen=True)
class Engine:
    """One engine's pure edits."""

    paths: Callable[[Settings], tuple[str, ...]]
    """Every file configure or unconfigure may read or change."""
    backed_up: Callable[[Settings], tuple[str, ...]]
    """The files an admin wrote (a backup is kept before we change them); the others are ours."""
    configure: Callable[[Texts, Settings], Texts]
    unconfigure: Callable[[Texts, Texts, Settings], Texts]
    """(current texts, backups, settings) -> texts; a backup tells what the admin had before."""
    same: Callable[[str, str, str], bool]
    """(path, a, b): whether two texts of that file mean the same to the engine."""
    default_config: Callable[[str], str]
    """Runtime name -> the file ``--config`` names when not given."""
    hint: str
    """What makes the engine read the change."""


def engine(name: str) -> Engine:
    """The engine called ``name``; only its module is imported."""
    if name not in ENGINES:
        raise ShimError("runtime", f"unknown engine {name!r}; expected "
                                   f"{', '.join(ENGINES)}")
    found: Engine = importlib.import_module(ENGINES[name]).ENGINE
    return found


def check_name(name: str) -> str:
    """A runtime name engines accept as a key and a file name: letters, digits, ``-_.``."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ShimError("runtime", f"runtime name {name!r}: use letters, digits, '-', '_' or "
                                   f"'.' (at most 63)")
    return name
