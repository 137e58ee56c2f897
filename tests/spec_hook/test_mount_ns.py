"""Entering the container's mount namespace only when the state's pid is elsewhere (a hook
registered as prestart/createRuntime); in place for createContainer (runc's in-namespace pid,
crun's 0). Each test that may move runs in a forked child."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from private_mounts import in_child

from gpu_core.errors import ShimError
from spec_hook import mount_ns

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def other_namespace() -> Iterator[int]:
    """A process in a mount namespace of its own; its pid as the host numbers it."""
    process = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "60"])
    try:
        while mount_ns.namespace_of(str(process.pid)) == mount_ns.namespace_of("self"):
            os.sched_yield()  # unshare has not reached the new namespace yet
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_no_pid_stays_in_place() -> None:
    assert mount_ns.enter_for(None) is False


def test_crun_s_zero_pid_stays_in_place() -> None:
    assert mount_ns.enter_for(0) is False


def test_a_pid_in_our_own_namespace_stays_in_place() -> None:
    assert mount_ns.enter_for(os.getpid()) is False


def test_a_pid_in_another_mount_namespace_is_entered(other_namespace: int) -> None:
    def body() -> None:
        assert mount_ns.enter_for(other_namespace) is True
        assert mount_ns.namespace_of("self") == mount_ns.namespace_of(str(other_namespace))

    in_child(body, private=False)


def test_a_pid_numbered_in_a_child_pid_namespace_is_our_parent() -> None:
    """As runc runs createContainer hooks: its init is pid 1 of the container's pid namespace
    and the hook's parent; /proc (the host's) numbers it otherwise, and its /proc/1 is the
    host's init in another mount namespace. No move: the parent shares ours."""
    script = ("import os, sys; from spec_hook import mount_ns; "
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    moved = mount_ns.enter_for(os.getppid())\n"
              "    os._exit(0 if (os.getppid(), moved) == (1, False) else 1)\n"
              "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "-p", "-f",
                             "--kill-child", sys.executable, "-c", script],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 0


def test_a_pid_that_does_not_exist_is_one_error() -> None:
    with pytest.raises(ShimError, match=r"mount namespace: pid 4194304: No such file"):
        mount_ns.enter_for(4194304)


def _read_only_self_bind(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    target = str(path).encode()
    assert libc.mount(target, target, None, 0x1000, None) == 0  # MS_BIND
    assert libc.mount(None, target, None, 0x1000 | 0x20 | 0x1, None) == 0  # + REMOUNT, RDONLY


def test_a_writable_rootfs_is_used_as_it_is(tmp_path: Path) -> None:
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        assert mount_ns.writable_root(str(tmp_path), root) == root
    finally:
        os.close(root)


def test_a_read_only_rootfs_gets_a_writable_view_and_stays_read_only_outside_it(
        tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    outside = tmp_path / "seen-outside"

    def body() -> None:
        _read_only_self_bind(rootfs)
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the hook's process: its own view; the parent stands for the container
            os.close(read)
            view = mount_ns.writable_root(str(rootfs), root)
            fd = os.open("made-by-hook", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=view)
            os.close(fd)
            os.write(write, b"ok")
            os._exit(0)
        os.close(write)
        assert os.read(read, 2) == b"ok"
        os.waitpid(pid, 0)
        assert (rootfs / "made-by-hook").exists()  # the same filesystem underneath
        try:
            (rootfs / "by-container").touch()
        except OSError as exc:
            outside.write_text(str(exc.errno))

    in_child(body)
    assert outside.read_text() == str(errno.EROFS)
