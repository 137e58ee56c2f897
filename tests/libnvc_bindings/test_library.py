"""The one error path (``Library.check``) and hidden functions, over a stand-in ``lib``."""

from __future__ import annotations

from typing import Any

import pytest

from libnvc_bindings import declarations
from libnvc_bindings.errors import NvcError
from libnvc_bindings.library import NO_MESSAGE, Library


class FakeLib:
    """Exports nvc_error (answering ``message``) and nvc_init; nothing else."""

    def __init__(self, ffi: Any, message: bytes | None) -> None:
        self._text = ffi.new("char[]", message) if message is not None else ffi.NULL

    def nvc_error(self, ctx: Any) -> Any:
        return self._text

    def nvc_init(self, *args: Any) -> int:
        return 0


def _library(message: bytes | None = b"cuda error: unknown error",
             version: tuple[int, int, int] = (1, 0, 2)) -> Library:
    ffi = declarations.ffi_for(version)
    return Library("/fake/libnvidia-container.so.1", version, "1.0.2", ffi,
                   FakeLib(ffi, message), declarations.functions_for(version))


def _ctx(library: Library) -> Any:
    return library.ffi.cast("struct nvc_context *", 0x1000)


def test_negative_return_raises_with_stage_and_nvc_error() -> None:
    """A -1 return becomes NvcError(stage, nvc_error(ctx))."""
    library = _library()
    with pytest.raises(NvcError, match=r"^nvc_init: cuda error: unknown error$") as caught:
        library.check(-1, "nvc_init", _ctx(library))
    assert caught.value.transient is True


def test_null_pointer_raises() -> None:
    """A NULL pointer result is a failure too."""
    library = _library(b"nvml error: driver/library version mismatch")
    with pytest.raises(NvcError, match="version mismatch") as caught:
        library.check(library.ffi.NULL, "nvc_device_info_new", _ctx(library))
    assert caught.value.transient is False


@pytest.mark.parametrize("result", [0, 1])
def test_success_values_pass_through(result: int) -> None:
    """Zero or positive returns are returned unchanged."""
    library = _library()
    assert library.check(result, "nvc_init", _ctx(library)) == result


def test_non_null_pointer_passes_through() -> None:
    """A non-NULL pointer is returned as is."""
    library = _library()
    ptr = library.ffi.new("struct nvc_version *")
    assert library.check(ptr, "nvc_version", _ctx(library)) is ptr


@pytest.mark.parametrize("message", [None, b""])
def test_missing_message_has_a_fixed_text(message: bytes | None) -> None:
    """A NULL or empty nvc_error() yields a fixed message instead of nothing."""
    library = _library(message)
    with pytest.raises(NvcError, match=f"^nvc_init: {NO_MESSAGE}$"):
        library.check(-1, "nvc_init", _ctx(library))


def test_failure_without_context_has_a_fixed_text() -> None:
    """With no context (nvc_context_new failed) nvc_error is not called."""
    library = _library()
    with pytest.raises(NvcError, match=f"^nvc_context_new: {NO_MESSAGE}$"):
        library.check(library.ffi.NULL, "nvc_context_new")


def test_functions_the_library_lacks_are_hidden() -> None:
    """Only exported functions are offered; asking for another is a permanent NvcError."""
    library = _library()
    assert library.available == ("nvc_error", "nvc_init")
    assert not library.has("nvc_driver_mount")
    with pytest.raises(NvcError, match=r"^nvc_driver_mount: not provided by "
                                       r"libnvidia-container 1\.0\.2$") as caught:
        library.fn("nvc_driver_mount")
    assert caught.value.transient is False


def test_functions_newer_than_the_release_are_hidden() -> None:
    """A symbol exported by the library but newer than its release is still hidden."""

    class Exports(FakeLib):
        def nvc_mig_config_global_caps_mount(self, *args: Any) -> int:
            return 0

    ffi = declarations.ffi_for((1, 0, 2))
    library = Library("x", (1, 0, 2), "1.0.2", ffi, Exports(ffi, b""),
                      declarations.functions_for((1, 0, 2)))
    assert not library.has("nvc_mig_config_global_caps_mount")
