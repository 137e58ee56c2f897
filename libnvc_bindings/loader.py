"""Find and open libnvidia-container: one loader, a version check first, every attempt listed.

Candidates are tried in order: the configured path (config ``libnvidia_container.library``),
then the usual sonames. Each is opened with the process's own ``dlopen`` so that a failure
carries ``dlerror()``'s reason and no lookup falls back to ``ctypes.util.find_library``
(which runs host tools such as ldconfig and gcc). Its ``nvc_version()`` picks the
declarations; only then is it bound through the generation's ``cffi.FFI``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libnvc_bindings import declarations
from libnvc_bindings.errors import LoadAttempt, NvcLoadError, UnsupportedVersionError
from libnvc_bindings.library import Library

DEFAULT_NAMES: tuple[str, ...] = ("libnvidia-container.so.1", "libnvidia-container.so")

# <dlfcn.h> on Linux: resolve every symbol now, so a broken library fails here, not mid-mount.
RTLD_NOW = 2


class _Refused(Exception):
    """A candidate could not be used; ``reason`` goes into the load error's attempt list."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def candidates(configured: str = "", names: Sequence[str] = DEFAULT_NAMES) -> tuple[str, ...]:
    """The configured path first (when set), then ``names``, without repeats."""
    ordered = ([configured] if configured else []) + list(names)
    return tuple(dict.fromkeys(ordered))


def load(configured: str = "", names: Sequence[str] = DEFAULT_NAMES) -> Library:
    """Open the first usable candidate; if none is, raise one ``NvcLoadError`` listing each
    attempt and why it failed."""
    attempts: list[LoadAttempt] = []
    for candidate in candidates(configured, names):
        try:
            return open_library(candidate)
        except _Refused as refused:
            attempts.append(LoadAttempt(candidate, refused.reason))
    raise NvcLoadError(attempts)


def _dl() -> tuple[Any, Any]:
    probe = declarations.probe_ffi()
    dl = probe.dlopen(None)
    # cffi binds a symbol on first attribute access with dlsym(), which clears dlerror();
    # binding them all now keeps the reason of a failed dlopen() readable afterwards.
    for name in ("dlopen", "dlsym", "dladdr", "dlclose", "dlerror"):
        getattr(dl, name)
    return probe, dl


def _dlerror(probe: Any, dl: Any) -> str:
    raw = dl.dlerror()
    if raw == probe.NULL:
        return "dlopen failed without a reason"
    message: bytes = probe.string(raw)
    return message.decode("utf-8", "replace")


def open_library(candidate: str) -> Library:
    """Open one candidate, read its version, bind its generation's declarations; raise
    ``_Refused`` with the reason when it cannot be used."""
    probe, dl = _dl()
    handle = dl.dlopen(candidate.encode(), RTLD_NOW)
    if handle == probe.NULL:
        raise _Refused(_dlerror(probe, dl))
    bound = False
    try:
        symbol = dl.dlsym(handle, b"nvc_version")
        if symbol == probe.NULL:
            raise _Refused("no nvc_version symbol (not libnvidia-container)")
        version, text = _read_version(probe, symbol)
        path = _loaded_path(probe, dl, symbol) or candidate
        try:
            ffi = declarations.ffi_for(version)
        except UnsupportedVersionError as exc:
            raise _Refused(str(exc)) from None
        # The file the probe loaded, by its path: cffi opens the same object and never searches.
        try:
            lib = ffi.dlopen(path)
        except OSError as exc:
            raise _Refused(f"cffi dlopen: {exc}") from None
        library = Library(path, version, text, ffi, lib, declarations.functions_for(version))
        missing = [name for name in declarations.REQUIRED if not library.has(name)]
        if missing:
            raise _Refused(f"libnvidia-container {text} lacks {', '.join(missing)}")
        bound = True
        return library
    finally:
        # A refused candidate is closed. A bound one keeps the probe's handle for the life of
        # the process: the library must stay mapped while an ffi.gc'd pointer may still call
        # its nvc_*_free, and Python frees cffi's lib and those pointers in no fixed order
        # at exit (freeing after the unmap was a segfault).
        if not bound:
            dl.dlclose(handle)


def _loaded_path(probe: Any, dl: Any, symbol: Any) -> str:
    info = probe.new("Dl_info *")
    if dl.dladdr(symbol, info) == 0 or info.dli_fname == probe.NULL:
        return ""
    raw: bytes = probe.string(info.dli_fname)
    path = raw.decode("utf-8", "surrogateescape")
    return path if "/" in path else ""


def _read_version(probe: Any, symbol: Any) -> tuple[declarations.Version, str]:
    nvc_version = probe.cast("const struct nvc_version *(*)(void)", symbol)
    found = nvc_version()
    if found == probe.NULL:
        raise _Refused("nvc_version() returned NULL")
    version = (int(found.major), int(found.minor), int(found.patch))
    fallback = ".".join(str(part) for part in version)
    if found.string == probe.NULL:
        return version, fallback
    raw: bytes = probe.string(found.string)
    return version, raw.decode("utf-8", "replace") or fallback
