"""cffi ABI-mode bindings to libnvidia-container (README §The prestart hook;
the layouts per ABI generation are ``declarations.py``).

Importing the package is cheap: cffi is imported only when a library is loaded or an FFI is
built. Start with ``load()``; then ``Session(library, ...)``.
"""

from __future__ import annotations

from libnvc_bindings.classification import classify, is_transient
from libnvc_bindings.declarations import GENERATIONS, Version, ffi_for, generation_for
from libnvc_bindings.errors import LoadAttempt, NvcError, NvcLoadError, UnsupportedVersionError
from libnvc_bindings.library import Library
from libnvc_bindings.loader import DEFAULT_NAMES, load
from libnvc_bindings.session import Container, Session
from libnvc_bindings.views import DeviceInfo, DeviceNode, DriverInfo, Gpu, MigDevice

__all__ = [
    "DEFAULT_NAMES",
    "GENERATIONS",
    "Container",
    "DeviceInfo",
    "DeviceNode",
    "DriverInfo",
    "Gpu",
    "Library",
    "LoadAttempt",
    "MigDevice",
    "NvcError",
    "NvcLoadError",
    "Session",
    "UnsupportedVersionError",
    "Version",
    "classify",
    "ffi_for",
    "generation_for",
    "is_transient",
    "load",
]
