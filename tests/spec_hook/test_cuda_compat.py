"""CUDA forward compatibility as data: which listing makes the compat directory go first."""

from __future__ import annotations

import pytest

from spec_hook import cuda_compat

DIR = "/usr/local/cuda/compat"


def test_a_newer_major_than_the_driver_chooses_the_compat_dir() -> None:
    listing = [("libcuda.so", False), ("libcuda.so.1", False), ("libcuda.so.550.54.15", True)]
    assert cuda_compat.choose(DIR, listing, "535.104.05") == DIR


def test_an_older_major_than_the_driver_chooses_nothing() -> None:
    assert cuda_compat.choose(DIR, [("libcuda.so.525.60.13", True)], "535.104.05") is None


def test_the_same_major_as_the_driver_chooses_nothing() -> None:
    assert cuda_compat.choose(DIR, [("libcuda.so.535.129.03", True)], "535.104.05") is None


@pytest.mark.parametrize("name", ["libcuda.so.999", "libcuda.so.abc.1", "libcuda.so.999.x",
                                  "libcudart.so.999.1", "xlibcuda.so.999.1",
                                  "libcuda.so.999.1.", "libcuda.so.999.1 ", "libcuda.so.-1.0"])
def test_a_junk_name_never_counts(name: str) -> None:
    assert cuda_compat.choose(DIR, [(name, True)], "535.104.05") is None


def test_a_non_regular_newer_libcuda_never_counts() -> None:
    """A symlink (which could name a file outside the rootfs), directory or FIFO is skipped."""
    assert cuda_compat.choose(DIR, [("libcuda.so.999.1", False)], "535.104.05") is None


def test_a_regular_newer_file_beside_junk_still_counts() -> None:
    listing = [("libcuda.so.999", True), ("libcuda.so.560.28.03", True)]
    assert cuda_compat.choose(DIR, listing, "550") == DIR


@pytest.mark.parametrize("version", ["", "abc", "535.", ".535", "535..1", "-1", "535 ", "5" * 70])
def test_a_junk_driver_version_is_a_value_error(version: str) -> None:
    with pytest.raises(ValueError, match="not a driver version"):
        cuda_compat.driver_major(version)


def test_the_driver_major_is_the_first_number() -> None:
    assert cuda_compat.driver_major("535.104.05") == 535
