"""Nothing the hook starts outlives it: the host ldconfig blocked on an image's FIFO, an
``include`` loop, a stalled library call, a CLI fallback that hangs and leaves a grandchild that
ignores SIGTERM. Each start ends inside ``hook.timeout`` with the hook's own line naming the
step, and no process the hook started and no mount namespace it made is left (real runc, the
simulated host)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostguard import one_line_with

if TYPE_CHECKING:
    from conftest import Bench
    from containers import Bundle

pytestmark = pytest.mark.e2e

TIMEOUT = 4
HOOK = "gpu-container-hook: "


def leftovers(bundle: Bundle, marker: str = "\x00") -> list[str]:
    """Processes whose root lies under the bundle (ldconfig chrooted into the rootfs, in a mount
    namespace of its own) or whose command line carries ``marker``, with their namespaces."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
            with open(f"/proc/{entry}/cmdline", "rb") as stream:
                cmdline = stream.read().replace(b"\x00", b" ").decode(errors="replace")
            namespace = os.readlink(f"/proc/{entry}/ns/mnt")
        except OSError:
            continue
        if root.startswith(str(bundle.path)) or marker in cmdline:
            found.append(f"{entry} root={root} ns={namespace} {cmdline}")
    return found


def timed_out_line(stderr: str, step: str) -> str:
    """The hook's one line for ``step``: its deadline ended the step (or, for the CLI, the
    per-run timeout inside that deadline did)."""
    line = one_line_with(stderr, f"{HOOK}{step} error:")
    assert "did not finish within" in line or "timed out after" in line, line
    return line


def image_ldconfig(bundle: Bundle, conf: str, fifo: str = "") -> None:
    """The image's /etc/ld.so.conf is ``conf``; ``fifo`` (a path in the image) is a FIFO."""
    rootfs = bundle.path / "rootfs"
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "ld.so.conf").unlink(missing_ok=True)
    if fifo != "/etc/ld.so.conf":
        (rootfs / "etc" / "ld.so.conf").write_text(conf)
    if fifo:
        path = rootfs / fifo.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)


@pytest.mark.parametrize(("conf", "fifo"), [
    ("include /etc/ld.so.conf.d/*.conf\n", "/etc/ld.so.conf.d/x.conf"),
    ("include /opt/conf/fifo\n", "/opt/conf/fifo"),
    ("", "/etc/ld.so.conf"),
])
def test_ldconfig_blocked_on_a_fifo_is_killed_at_the_deadline(bench: Bench, conf: str,
                                                              fifo: str) -> None:
    """ldconfig opening an image FIFO blocks forever: the hook kills it with everything the
    library started before its own timeout, the line names the ldcache step, nothing is left."""
    host = bench.host()
    config = bench.config(host, ["runc"], hook={"timeout": TIMEOUT})
    bundle = bench.bundle()
    image_ldconfig(bundle, conf, fifo)
    started = time.monotonic()
    result = bench.shim("run", bundle, config, "fifo")
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    timed_out_line(result.stderr, "ldcache")
    assert "ran past specified timeout" not in result.stderr  # the hook ended it, not runc
    assert elapsed < 30, elapsed  # blocked forever otherwise
    assert leftovers(bundle) == []
    assert bench.runc_containers() == []


def test_include_loop_ends_inside_the_timeout(bench: Bench) -> None:
    """ld.so.conf including itself: the start either succeeds or fails in one line, inside the
    hook's timeout, leaving no process behind."""
    host = bench.host()
    config = bench.config(host, ["runc"], hook={"timeout": TIMEOUT})
    bundle = bench.bundle()
    image_ldconfig(bundle, "include /etc/ld.so.conf\ninclude /etc/ld.so.conf.d/*.conf\n")
    (bundle.path / "rootfs" / "etc" / "ld.so.conf.d").mkdir(exist_ok=True)
    (bundle.path / "rootfs" / "etc" / "ld.so.conf.d" / "a.conf").write_text(
        "include /etc/ld.so.conf\n")
    result = bench.shim("run", bundle, config, "loop")
    assert result.returncode == 0 or len([line for line in result.stderr.splitlines()
                                          if HOOK in line]) == 1, result.stderr
    assert "ran past specified timeout" not in result.stderr
    assert leftovers(bundle) == []


def test_stalled_library_call_is_killed_naming_the_mount_step(bench: Bench) -> None:
    """libnvidia-container stalls in a mount (nvc-mount-delay): the hook's own line names the
    mount step, before runc's timeout would kill the hook."""
    host = bench.host(faults=["nvc-mount-delay=60000"])
    config = bench.config(host, ["runc"], hook={"timeout": TIMEOUT})
    bundle = bench.bundle()
    result = bench.shim("run", bundle, config, "stall")
    assert result.returncode != 0
    assert "libnvidia-container did not finish" in timed_out_line(result.stderr, "mount")
    assert leftovers(bundle) == []


HANGING_CLI = """#!/bin/sh
# A CLI that leaves a grandchild in a session of its own ignoring SIGTERM, one in its own
# process group, then hangs itself.
setsid sh -c 'trap "" TERM; while :; do sleep 1; done' {marker}-setsid &
sh -c 'trap "" TERM HUP; while :; do sleep 1; done' {marker}-child &
trap "" TERM
while :; do sleep 1; done
"""


@pytest.mark.parametrize("timeout", [TIMEOUT, TIMEOUT + 2])
def test_hanging_cli_and_its_grandchildren_are_killed(bench: Bench, tmp_path: Path,
                                                      timeout: int) -> None:
    """The CLI fallback hangs after forking grandchildren that ignore SIGTERM (one in a new
    session): the hook kills all of them before its timeout and names the CLI step."""
    marker = f"gpu-hook-test-{uuid.uuid4().hex[:8]}"
    cli = tmp_path / "nvidia-container-cli"
    cli.write_text(HANGING_CLI.format(marker=marker))
    cli.chmod(0o755)
    host = bench.host()
    config = bench.config(host, ["runc"], hook={"timeout": timeout},
                          libnvidia_container={"library": str(tmp_path / "absent.so"),
                                               "cli": str(cli)})
    bundle = bench.bundle()
    result = bench.shim("run", bundle, config, "cli")
    assert result.returncode != 0
    assert "nvidia-container-cli" in timed_out_line(result.stderr, "cli")
    assert "ran past specified timeout" not in result.stderr
    assert leftovers(bundle, marker) == []
