"""Which C declarations describe which libnvidia-container release (README §The prestart
hook names the generations).

Releases that share struct layouts form a generation; a generation is an ordered list of
plain C files under ``decls/``, joined and handed to one ``cffi.FFI`` (ABI mode: nothing is
compiled). Functions are declared per generation and looked up by name at load time, so a
release that lacks one hides it instead of failing.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from libnvc_bindings.errors import UnsupportedVersionError

if TYPE_CHECKING:
    import cffi

Version = tuple[int, int, int]
"""A release as (major, minor, patch), the fields of ``struct nvc_version``."""

SUPPORTED_MAJOR = 1


@dataclass(frozen=True)
class Generation:
    """Releases sharing one ABI: from ``first`` (major, minor) up to the next generation."""

    name: str
    first: tuple[int, int]
    files: tuple[str, ...]


_STRUCTS_1_0 = ("types.h", "version.h", "config_v1_0.h", "device_node.h", "driver_info_v1_0.h",
                "device_v1_0.h", "container_config.h", "core.h")
_STRUCTS_1_1 = ("types.h", "version.h", "config_v1_0.h", "device_node.h", "driver_info_v1_0.h",
                "device_v1_1.h", "container_config.h", "core.h", "mig.h", "nvcaps.h")
_STRUCTS_1_5 = ("types.h", "version.h", "config_v1_0.h", "device_node.h", "driver_info_v1_5.h",
                "device_v1_1.h", "container_config.h", "core.h", "mig.h", "nvcaps.h")
_STRUCTS_1_15 = ("types.h", "version.h", "config_v1_15.h", "device_node.h",
                 "driver_info_v1_5.h", "device_v1_1.h", "container_config.h", "core.h", "mig.h",
                 "nvcaps.h", "imex.h")

# Newest last: generation_for() picks the last one whose first release is not newer.
GENERATIONS: tuple[Generation, ...] = (
    Generation("1.0", (1, 0), _STRUCTS_1_0),
    Generation("1.1-1.4", (1, 1), _STRUCTS_1_1),
    Generation("1.5-1.14", (1, 5), _STRUCTS_1_5),
    Generation("1.15+", (1, 15), _STRUCTS_1_15),
)

# Every function the bindings use, with the release that introduced it. A function is offered
# only when the release is at least that new AND the library exports the symbol.
FUNCTIONS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("nvc_version", (1, 0)),
    ("nvc_context_new", (1, 0)),
    ("nvc_context_free", (1, 0)),
    ("nvc_config_new", (1, 0)),
    ("nvc_config_free", (1, 0)),
    ("nvc_init", (1, 0)),
    ("nvc_shutdown", (1, 0)),
    ("nvc_container_config_new", (1, 0)),
    ("nvc_container_config_free", (1, 0)),
    ("nvc_container_new", (1, 0)),
    ("nvc_container_free", (1, 0)),
    ("nvc_driver_info_new", (1, 0)),
    ("nvc_driver_info_free", (1, 0)),
    ("nvc_device_info_new", (1, 0)),
    ("nvc_device_info_free", (1, 0)),
    ("nvc_driver_mount", (1, 0)),
    ("nvc_device_mount", (1, 0)),
    ("nvc_ldcache_update", (1, 0)),
    ("nvc_error", (1, 0)),
    ("nvc_mig_device_access_caps_mount", (1, 1)),
    ("nvc_mig_config_global_caps_mount", (1, 1)),
    ("nvc_mig_monitor_global_caps_mount", (1, 1)),
    ("nvc_device_mig_caps_mount", (1, 1)),
    ("nvc_nvcaps_style", (1, 3)),
    ("nvc_nvcaps_device_from_proc_path", (1, 3)),
    ("nvc_imex_channel_mount", (1, 15)),
)

# Without these no container can be set up: a library missing one is refused at load.
REQUIRED: tuple[str, ...] = tuple(name for name, since in FUNCTIONS if since == (1, 0))


def supported_text() -> str:
    """Describe what ``generation_for`` accepts, for error messages."""
    names = ", ".join(g.name for g in GENERATIONS)
    return f"supported: major {SUPPORTED_MAJOR}, generations {names}"


def generation_for(version: Version) -> Generation:
    """Return the generation declaring ``version``'s ABI; refuse any other major version."""
    major, minor, _ = version
    if major != SUPPORTED_MAJOR:
        raise UnsupportedVersionError(version, supported_text())
    chosen = [g for g in GENERATIONS if g.first <= (major, minor)]
    return chosen[-1]


def functions_for(version: Version) -> tuple[str, ...]:
    """Names of the functions ``version`` may export (newer ones stay hidden)."""
    return tuple(name for name, since in FUNCTIONS if since <= version[:2])


PROBE_FILES: tuple[str, ...] = ("types.h", "version.h", "dl.h")
"""What the loader declares before it knows the version: dl* and nvc_version."""


def read_decls(files: tuple[str, ...]) -> str:
    """Join the named ``decls/`` files, in the given order, into one cdef text."""
    # os.path, not importlib.resources: that import alone costs the hook milliseconds
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decls")
    texts = []
    for name in files:
        with open(os.path.join(folder, name), encoding="utf-8") as stream:
            texts.append(stream.read())
    return "\n".join(texts)


@functools.cache
def _ffi_for_files(files: tuple[str, ...]) -> cffi.FFI:
    from libnvc_bindings import parsed

    text = read_decls(files)
    ffi = parsed.load(text)  # shipped already parsed: no cdef at every start
    if ffi is not None:
        return cast("cffi.FFI", ffi)
    import cffi  # lazily: importing the package must stay cheap

    parsing = cffi.FFI()
    parsing.cdef(text)
    return parsing


def ffi_for(version: Version) -> cffi.FFI:
    """The ``cffi.FFI`` declaring ``version``'s structs and functions (shared per generation)."""
    return _ffi_for_files(generation_for(version).files)


def probe_ffi() -> cffi.FFI:
    """The declarations the loader needs before it knows the version: dl* and nvc_version."""
    return _ffi_for_files(PROBE_FILES)
