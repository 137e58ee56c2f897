"""Adversarial host state: what others could plant where the shim and hook keep state as root
(the lease directory, our log, lease files), through shim, hook and simulated
libnvidia-container with real runc. Each case checks the canary tree (nothing written, created
or deleted through a planted link), and that the container still starts or fails in one line.

The config cache and the fast-path entry live under the machine's /run, which parallel test
runs share: their cases are unit tests on private directories (tests/gpu_core/test_config.py,
tests/runtime_shim/test_fastpath.py, tests/runtime_shim/test_launcher_create.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostguard import one_line_with, overlay_bundle, sim_runtime_config

from gpu_core.logfile import parse_line

if TYPE_CHECKING:
    from conftest import Sandbox

pytestmark = pytest.mark.e2e

MIG = ("NVIDIA_VISIBLE_DEVICES=mig-1g.10gb",)
NOBODY = 65534


def leased(log: Path) -> list[str]:
    """The MIG UUIDs the shim's log lines say were leased."""
    found = []
    for line in log.read_text().splitlines():
        changes = dict(parse_line(line)).get("changes", "")
        found += [part.split(" -> ")[1].split(" ")[0] for part in changes.split("; ")
                  if part.startswith("mig-lease: mig-1g.10gb -> ")]
    return found


def first_mig(sandbox: Sandbox) -> str:
    return str(sandbox.hosts["dgx-a100-mig"].topology["gpus"][0]["mig"]["devices"][0]["uuid"])


@pytest.mark.parametrize("plant", ["symlink to a directory", "dangling symlink", "foreign",
                                   "world-writable"])
def test_lease_directory_others_control_is_never_used(sandbox: Sandbox, plant: str) -> None:
    """A lease directory someone else made, left writable or planted as a link is moved aside
    (the link itself, never its target) and made again: the container gets its MIG device and
    nothing changes in the canary."""
    leases = sandbox.tmp / "leases"
    if plant == "symlink to a directory":
        leases.symlink_to(sandbox.canary.root / "run")
    elif plant == "dangling symlink":
        leases.symlink_to(sandbox.canary.root / "run" / "leases")
    else:
        leases.mkdir()
        os.chown(leases, NOBODY, NOBODY) if plant == "foreign" else leases.chmod(0o777)
    started = sandbox.start(sandbox.bundle(MIG), "dgx-a100-mig",
                            mig={"lease_dir": str(leases)})
    assert started.returncode == 0, started.stderr
    assert started.outside == []
    assert not leases.is_symlink() and os.lstat(leases).st_mode & 0o777 == 0o700
    assert leased(sandbox.tmp / "shim.log")


def test_lease_file_that_cannot_be_read_blocks_allocation_in_one_line(sandbox: Sandbox) -> None:
    """An unreadable lease may belong to a live container and hold any device: the start is
    refused in one line naming it, and config.json is untouched."""
    leases = sandbox.tmp / "leases"
    leases.mkdir(mode=0o700)
    (leases / "other.json").write_text('{"format": 1, "devic')
    bundle = sandbox.bundle(MIG)
    before = (bundle.path / "config.json").read_bytes()
    started = sandbox.start(bundle, "dgx-a100-mig", mig={"lease_dir": str(leases)})
    assert started.returncode != 0
    line = one_line_with(started.stderr, "unreadable lease other.json")
    assert "no MIG device is handed out" in line
    assert (bundle.path / "config.json").read_bytes() == before
    assert started.outside == []


def test_device_of_a_lease_in_another_format_is_not_handed_out(sandbox: Sandbox) -> None:
    """A lease of another format version still holds the device it names while its holder
    lives: the container gets the next free instance."""
    leases = sandbox.tmp / "leases"
    leases.mkdir(mode=0o700)
    held = first_mig(sandbox)
    (leases / "newer.json").write_text(json.dumps({
        "format": 2, "container_id": "newer", "holder": {"shim_pid": os.getpid()},
        "devices": [{"uuid": held}]}))
    started = sandbox.start(sandbox.bundle(MIG), "dgx-a100-mig", mig={"lease_dir": str(leases)})
    assert started.returncode == 0, started.stderr
    got = leased(sandbox.tmp / "shim.log")
    assert got and held not in got
    assert (leases / "newer.json").exists()


@pytest.mark.parametrize("plant", ["symlink", "hard link"])
def test_log_file_planted_as_a_link_is_never_written_through(sandbox: Sandbox,
                                                             plant: str) -> None:
    """Our log is appended to as root: a link planted there to a host file is moved aside, the
    file is untouched, and the create's line lands in a fresh log."""
    log = sandbox.tmp / "shim.log"
    victim = sandbox.canary.root / "etc" / "passwd"
    log.symlink_to(victim) if plant == "symlink" else os.link(victim, log)
    started = sandbox.start(sandbox.bundle())
    assert started.returncode == 0, started.stderr
    assert started.outside == []
    assert not log.is_symlink() and os.stat(log).st_nlink == 1
    assert any(dict(parse_line(line)).get("event") == "untrusted-state"
               for line in log.read_text().splitlines())


def test_log_in_a_directory_others_can_write_is_not_written(sandbox: Sandbox) -> None:
    logs = sandbox.tmp / "logs"
    logs.mkdir()
    logs.chmod(0o777)
    (logs / "shim.log").symlink_to(sandbox.canary.root / "etc" / "passwd")
    config = sandbox.tmp / "logs-elsewhere.yaml"
    config.write_text(sim_runtime_config(sandbox.hosts["dgx-a100"].config_path, ["runc"],
                                         logs / "shim.log"))
    started = sandbox.start(sandbox.bundle(), config=config)
    assert started.returncode == 0, started.stderr
    assert started.outside == []
    assert (logs / "shim.log").is_symlink()


@pytest.mark.parametrize("separator", ["\n", "\r", "\v", "\f", "\x85", "\u2028", "\u2029"])
def test_log_lines_cannot_be_forged_through_the_bundle_path(sandbox: Sandbox,
                                                            separator: str) -> None:
    """A bundle directory whose name holds a line separator and a forged record: our log still
    has one record per create, and no record carries the forged field."""
    forged = sandbox.tmp / f"b{separator}time=x level=error forged=yes"
    bundle = overlay_bundle(sandbox.image, forged, ("/bin/true",), ("NVIDIA_VISIBLE_DEVICES=0",),
                            None)
    sandbox.bundles.append(bundle)
    started = sandbox.start(bundle)
    assert started.returncode == 0, started.stderr
    assert started.outside == []
    records = [dict(parse_line(line))
               for line in (sandbox.tmp / "shim.log").read_text().split("\n") if line]
    assert records and all("forged" not in record for record in records)
    assert any(record.get("bundle") == str(forged) for record in records)
