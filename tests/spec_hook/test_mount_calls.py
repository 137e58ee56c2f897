"""The ctypes mount calls: errors come back as OSError with the kernel's errno."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from spec_hook import mount_calls


def test_fs_magic_names_procfs() -> None:
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY)
    try:
        assert mount_calls.fs_magic(fd) == mount_calls.PROC_MAGIC
    finally:
        os.close(fd)


def test_a_failing_mount_is_an_oserror_with_its_errno(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as raised:
            mount_calls.mount(None, fd, "no-such-filesystem-type", 0)
        assert raised.value.errno == errno.ENODEV
    finally:
        os.close(fd)
