"""The loader: candidate order, one error listing every attempt, version check first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from libnvc_bindings import loader
from libnvc_bindings.errors import LoadAttempt, NvcLoadError

StubBuilder = Callable[[tuple[int, int, int]], Path]


def test_candidates_put_the_configured_path_first() -> None:
    """The configured path is tried before the usual names."""
    assert loader.candidates("/opt/nvc/libnvidia-container.so.1") == (
        "/opt/nvc/libnvidia-container.so.1", "libnvidia-container.so.1",
        "libnvidia-container.so")


def test_candidates_without_configuration_are_the_usual_names() -> None:
    """An empty configured path adds nothing."""
    assert loader.candidates("") == loader.DEFAULT_NAMES


def test_candidates_drop_repeats() -> None:
    """A configured path equal to a usual name is tried once."""
    assert loader.candidates("libnvidia-container.so") == (
        "libnvidia-container.so", "libnvidia-container.so.1")


def test_missing_files_are_each_listed_with_dlerror() -> None:
    """Every candidate that cannot be opened appears, in order, with dlopen's reason."""
    with pytest.raises(NvcLoadError) as caught:
        loader.load("/nonexistent/a.so", names=("/nonexistent/b.so",))
    assert caught.value.attempts == (
        LoadAttempt("/nonexistent/a.so",
                    "/nonexistent/a.so: cannot open shared object file: No such file or directory"),
        LoadAttempt("/nonexistent/b.so",
                    "/nonexistent/b.so: cannot open shared object file: No such file or directory"),
    )


def test_load_error_message_names_every_attempt() -> None:
    """The one error's text starts with the stage and carries each candidate and reason."""
    with pytest.raises(NvcLoadError, match=r"^load: no usable libnvidia-container \(tried "
                                           r"/nonexistent/a\.so: .*No such file.*; "
                                           r"libc\.so\.6: no nvc_version symbol"):
        loader.load("/nonexistent/a.so", names=("libc.so.6",))


def test_library_without_nvc_version_is_refused() -> None:
    """A library that is not libnvidia-container (libc) is refused for lacking nvc_version."""
    with pytest.raises(NvcLoadError) as caught:
        loader.load("", names=("libc.so.6",))
    assert caught.value.attempts == (
        LoadAttempt("libc.so.6", "no nvc_version symbol (not libnvidia-container)"),)


def test_unknown_major_version_is_refused(version_stub: StubBuilder) -> None:
    """A library reporting major version 2 is refused with the version error as reason."""
    path = str(version_stub((2, 0, 0)))
    with pytest.raises(NvcLoadError) as caught:
        loader.load(path, names=())
    (attempt,) = caught.value.attempts
    assert attempt.reason.startswith("version: libnvidia-container 2.0.0 is not supported")


def test_library_lacking_required_functions_is_refused(version_stub: StubBuilder) -> None:
    """A supported version without the core functions is refused, naming what is missing."""
    path = str(version_stub((1, 17, 8)))
    with pytest.raises(NvcLoadError) as caught:
        loader.load(path, names=())
    (attempt,) = caught.value.attempts
    assert attempt.reason.startswith("libnvidia-container 1.17.8-stub lacks nvc_context_new, ")


def test_a_refused_candidate_falls_through_to_the_next(version_stub: StubBuilder) -> None:
    """Each candidate is tried even after one that loaded but was refused."""
    with pytest.raises(NvcLoadError) as caught:
        loader.load(str(version_stub((2, 0, 0))), names=("libc.so.6", "/nonexistent/c.so"))
    assert [a.candidate for a in caught.value.attempts] == [
        str(version_stub((2, 0, 0))), "libc.so.6", "/nonexistent/c.so"]


def test_no_candidates_is_one_clear_error() -> None:
    """With nothing to try the error says so."""
    with pytest.raises(NvcLoadError, match=r"\(tried no candidates\)"):
        loader.load("", names=())
