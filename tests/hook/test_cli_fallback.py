"""The nvidia-container-cli fallback: the argument form, one run, and runs under retry."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Callable

import pytest
from pytest_subprocess import FakeProcess

from gpu_core.errors import ShimError
from gpu_core.retry import RetryPolicy
from hook import cli_fallback
from hook.cli_fallback import CliError, CliRequest, cli_argv

CLI = "/usr/bin/nvidia-container-cli"
POLICY = RetryPolicy(attempts=4, deadline=10.0, initial_backoff=0.1, max_backoff=1.0)


class TestCliArgv:
    def test_full_form_operators_know(self) -> None:
        """Global options, configure, its options in the toolkit's order, pid, rootfs last."""
        request = CliRequest(pid=4242, rootfs="/b/rootfs", devices=("GPU-a", "MIG-b"),
                             capabilities=frozenset({"utility", "compute"}),
                             requirements=("cuda>=12.0", "brand=tesla"))
        assert cli_argv(CLI, request, load_kmods=True, ldconfig="@/sbin/ldconfig") == [
            CLI, "--load-kmods", "configure", "--no-cgroups", "--ldconfig=@/sbin/ldconfig",
            "--device=GPU-a,MIG-b", "--compute", "--utility", "--require=cuda>=12.0",
            "--require=brand=tesla", "--pid=4242", "/b/rootfs"]

    def test_none_passes_no_device_and_root_names_the_driver_root(self) -> None:
        """``none`` mounts the driver only; a non-/ driver root becomes ``--root``."""
        request = CliRequest(pid=7, rootfs="/r", devices=(), capabilities=frozenset({"video"}))
        assert cli_argv(CLI, request, load_kmods=False, ldconfig="@/sbin/ldconfig",
                        driver_root="/run/nvidia/driver") == [
            CLI, "--root=/run/nvidia/driver", "configure", "--no-cgroups",
            "--ldconfig=@/sbin/ldconfig", "--video", "--pid=7", "/r"]

    def test_mig_config_and_monitor(self) -> None:
        """The MIG variables become --mig-config=all and --mig-monitor=all."""
        request = CliRequest(pid=7, rootfs="/r", devices=("all",), capabilities=frozenset(),
                             mig_config=True, mig_monitor=True)
        assert cli_argv(CLI, request, load_kmods=False, ldconfig="@/sbin/ldconfig")[4:] == [
            "--device=all", "--mig-config=all", "--mig-monitor=all", "--pid=7", "/r"]


class TestRunCli:
    def test_success_runs_with_a_clean_environment(self, fp: FakeProcess,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """The CLI gets PATH and nothing else, whatever the hook's environment holds."""
        monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
        recorder = fp.register([CLI, "configure"])
        cli_fallback.run_cli([CLI, "configure"], timeout=5.0)
        call = recorder.first_call
        assert call is not None and call.kwargs is not None
        assert call.kwargs["env"] == {"PATH": cli_fallback.CLEAN_ENV["PATH"]}

    @pytest.mark.parametrize(("stderr", "message", "transient"), [
        ("nvidia-container-cli: initialization error: cuda error: unknown error\n",
         "initialization error: cuda error: unknown error", True),
        ("warning: x\nnvidia-container-cli: mount error: permission denied\n",
         "mount error: permission denied", False),
        ("", "exited with status 1 and no message", False),
    ])
    def test_failure_carries_the_last_line_and_its_class(
            self, fp: FakeProcess, stderr: str, message: str, transient: bool) -> None:
        """The error is the CLI's last stderr line without its prefix, classified like the
        library's messages."""
        fp.register([CLI, "configure"], stderr=stderr, returncode=1)
        with pytest.raises(CliError) as caught:
            cli_fallback.run_cli([CLI, "configure"], timeout=5.0)
        assert (caught.value.message, caught.value.transient) == (message, transient)

    def test_missing_binary_is_a_permanent_error(self, fp: FakeProcess) -> None:
        """A CLI path that cannot be executed fails without retry, naming the path."""
        fp.allow_unregistered(True)
        with pytest.raises(CliError, match="cannot run /nonexistent/cli") as caught:
            cli_fallback.run_cli(["/nonexistent/cli"], timeout=5.0)
        assert not caught.value.transient

    def test_timeout_is_a_permanent_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A CLI that outlives its share of the deadline is stopped and reported."""
        def expire(argv: list[str], **kwargs: object) -> None:
            raise subprocess.TimeoutExpired(argv, 0.1)

        monkeypatch.setattr(subprocess, "run", expire)
        with pytest.raises(CliError, match=r"timed out after 0\.1s") as caught:
            cli_fallback.run_cli([CLI], timeout=0.1)
        assert not caught.value.transient


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def ignore(line: str) -> None:
    """A retry log nobody reads."""


def scripted(errors: list[CliError]
             ) -> tuple[list[float], Callable[..., None]]:
    timeouts: list[float] = []

    def runner(argv: Sequence[str], timeout: float, keep_fds: Sequence[int] = ()) -> None:
        timeouts.append(timeout)
        if errors:
            raise errors.pop(0)
    return timeouts, runner


class TestConfigure:
    def test_transient_failures_are_retried_and_logged(self) -> None:
        """Two transient failures are logged as retries, the third run succeeds."""
        clock, lines = Clock(), list[str]()
        error = CliError("initialization error: cuda error: unknown error", transient=True)
        timeouts, runner = scripted([error, error])
        cli_fallback.configure([CLI], POLICY, lines.append, clock=clock, sleep=clock.sleep,
                               runner=runner)
        assert len(timeouts) == 3 and len(lines) == 2
        assert "initialization error: cuda error: unknown error" in lines[0]
        assert timeouts[0] == 10.0 and timeouts[2] < 10.0

    def test_permanent_failure_keeps_the_cli_stage(self) -> None:
        """The hook's error line reuses the CLI's own stage word."""
        clock = Clock()
        _, runner = scripted([CliError("mount error: permission denied", transient=False)])
        with pytest.raises(ShimError) as caught:
            cli_fallback.configure([CLI], POLICY, ignore, clock=clock, sleep=clock.sleep,
                                   runner=runner)
        assert (caught.value.stage, caught.value.cause) == (
            "mount", "permission denied (nvidia-container-cli)")

    def test_message_without_stage_is_a_cli_error(self) -> None:
        """A message without ``<stage> error:`` is reported under stage ``cli``."""
        clock = Clock()
        _, runner = scripted([CliError("timed out after 3.0s", transient=False)])
        with pytest.raises(ShimError,
                           match=r"^cli: timed out after 3\.0s \(nvidia-container-cli\)$"):
            cli_fallback.configure([CLI], POLICY, ignore, clock=clock, sleep=clock.sleep,
                                   runner=runner)
