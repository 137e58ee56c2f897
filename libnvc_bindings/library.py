"""A loaded libnvidia-container: its release, declarations, offered functions, one error path."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from libnvc_bindings.declarations import Version
from libnvc_bindings.errors import NvcError

NO_MESSAGE = "failed without a message from libnvidia-container"


class Library:
    """One dlopen'ed release. Functions it lacks (or that are newer than it) are hidden:
    ``has`` says whether one is offered, ``fn`` refuses a hidden one with an ``NvcError``."""

    def __init__(self, path: str, version: Version, version_string: str, ffi: Any, lib: Any,
                 names: Iterable[str]) -> None:
        self.path = path
        self.version = version
        self.version_string = version_string
        self.ffi = ffi
        self._lib = lib
        self._functions: dict[str, Any] = {}
        # cffi's answer for a symbol the library does not export: AttributeError from an FFI
        # that parsed its declarations, ffi.error from a pre-parsed (out-of-line) one
        missing = (AttributeError, getattr(ffi, "error", AttributeError))
        for name in names:
            try:
                self._functions[name] = getattr(lib, name)
            except missing:
                continue

    @property
    def available(self) -> tuple[str, ...]:
        """The offered function names, sorted."""
        return tuple(sorted(self._functions))

    def has(self, name: str) -> bool:
        """Whether ``name`` is declared for this release and exported by the library."""
        return name in self._functions

    def fn(self, name: str) -> Any:
        """The C function ``name``; a hidden one raises a permanent ``NvcError``."""
        try:
            return self._functions[name]
        except KeyError:
            raise NvcError(
                name, f"not provided by libnvidia-container {self.version_string}") from None

    def error_message(self, ctx: Any) -> str:
        """What ``nvc_error(ctx)`` says, or a fixed text when there is no context or message."""
        if ctx is None or ctx == self.ffi.NULL:
            return NO_MESSAGE
        raw = self.fn("nvc_error")(ctx)
        if raw == self.ffi.NULL:
            return NO_MESSAGE
        message: bytes = self.ffi.string(raw)
        return message.decode("utf-8", "replace") or NO_MESSAGE

    def check(self, result: Any, stage: str, ctx: Any = None) -> Any:
        """The one error path: a negative return or a NULL pointer from ``stage`` becomes
        ``NvcError(stage, nvc_error(ctx))``; anything else is returned unchanged."""
        if isinstance(result, int):
            if result < 0:
                raise NvcError(stage, self.error_message(ctx))
            return result
        if result == self.ffi.NULL:
            raise NvcError(stage, self.error_message(ctx))
        return result
