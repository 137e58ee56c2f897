"""The shim's MIG-lease duties outside the pipeline: ``delete`` releases a container's lease
once the runtime has forgotten it (and stays an immediate exec for every other container), and
a create that fails after leasing gives its lease back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from nvml_probe import COUNT_INITS

from gpu_core.errors import ShimError
from gpu_core.testing import gpu_uuid, mig_uuid
from leases import files as lease_files
from leases import lock as lease_lock
from leases import write as lease_write
from leases.allocation import Holder, Lease, LeasedDevice
from runtime_shim import argv as argv_mod
from runtime_shim import main as main_mod

if TYPE_CHECKING:
    from simulator.testing import SimHost

DEAD_PID = 2 ** 30


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake runc that exits with $FAKE_RC (and removes <root>/<id> unless told to keep it),
    and a configuration whose lease store is tmp_path/leases."""
    runc = tmp_path / "runc"
    runc.write_text('#!/bin/sh\nfor a; do last=$a; done\n'
                    '[ -n "$KEEP_STATE" ] || rm -rf "$STATE_ROOT/$last"\nexit "${FAKE_RC:-0}"\n')
    runc.chmod(0o755)
    config = tmp_path / "config.yaml"
    config.write_text(f"runtimes: [{runc}]\nlog: {{file: ''}}\n"
                      f"mig: {{lease_dir: {tmp_path / 'leases'}}}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    monkeypatch.setenv("STATE_ROOT", str(tmp_path / "state"))
    (tmp_path / "state" / "c1").mkdir(parents=True)
    return tmp_path


def hold(node: Path, cid: str = "c1") -> None:
    """A lease as a finished create leaves it: the runtime knows the container, the shim is
    gone."""
    lease = Lease(holder=Holder(container_id=cid, runtime_root=str(node / "state"), bundle="/b",
                                shim_pid=DEAD_PID),
                  devices=(LeasedDevice(uuid=mig_uuid(0, 1, 0), profile="1g.10gb",
                                        gpu=gpu_uuid(0), token="mig-1g.10gb"),),
                  created=time.time())
    directory = str(node / "leases")
    with lease_lock.locked(directory):
        lease_write.write_lease(directory, lease)


def test_delete_releases_the_lease_after_the_runtime_deleted(node: Path) -> None:
    """runc deletes the container: its lease file is gone and runc's status is returned."""
    hold(node)
    assert main_mod.main(["--root", str(node / "state"), "delete", "--force", "c1"]) == 0
    assert not (node / "leases" / "c1.json").exists()


def test_failed_delete_keeps_the_lease(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runc refuses (the container still exists): the lease stays, runc's status is returned."""
    hold(node)
    monkeypatch.setenv("FAKE_RC", "3")
    monkeypatch.setenv("KEEP_STATE", "1")
    assert main_mod.main(["delete", "c1"]) == 3
    assert (node / "leases" / "c1.json").exists()


DELETE_PROBE = """
import os, sys
from runtime_shim import lowlevel, main
def report(self, args):
    print(sorted(m for m in sys.modules
                 if m == "subprocess" or m == "leases" or m.startswith("leases.")))
    sys.exit(0)
lowlevel.LowLevelRuntime.exec = report
main.main(["delete", "--force", "other"])
"""


def test_delete_without_lease_execs_at_once(node: Path) -> None:
    """A container without a lease: exec at once, importing no lease module nor subprocess."""
    hold(node)  # someone else's lease must not matter
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", DELETE_PROBE], capture_output=True, text=True,
                         check=True, env=env).stdout.strip()
    assert out == "[]"


def test_delete_id_is_parsed_after_global_flags() -> None:
    """`--root R delete --force ID` yields the id and the root the lease check needs."""
    parsed = argv_mod.parse(["--root", "/r", "--log", "/l", "delete", "--force", "abc"])
    assert (parsed.command, parsed.container_id, parsed.root, parsed.bundle) == (
        "delete", "abc", "/r", None)


class Execed(Exception):
    """The shim exec'd the runtime (stubbed)."""


@pytest.mark.parametrize("argv", [["delete", "--force=yes", "c1"], ["delete", "-f", "c2", "c1"],
                                  ["delete", "--bundle", "x", "c1"], ["--bogus", "delete", "c1"]],
                         ids=" ".join)
def test_a_delete_runc_refuses_releases_nothing(node: Path, monkeypatch: pytest.MonkeyPatch,
                                                argv: list[str]) -> None:
    """runc would refuse these argv and delete nothing (Go's flag rules: runtime_shim/argv.py),
    so the shim passes them through without touching c1's lease."""
    hold(node)
    (node / "state" / "c1").rmdir()  # even where c1 looks gone to the runtime

    def execed(self: object, args: list[str]) -> None:
        raise Execed

    monkeypatch.setattr(main_mod.lowlevel.LowLevelRuntime, "exec", execed)
    with pytest.raises(Execed):
        main_mod.main(argv)
    assert (node / "leases" / "c1.json").exists()


@pytest.mark.parametrize("argv", [["delete", "--f", "c1"], ["delete", "c1", "-force"],
                                  ["delete", "-f=true", "--", "c1"]], ids=" ".join)
def test_every_delete_spelling_runc_accepts_releases_the_lease(node: Path,
                                                               argv: list[str]) -> None:
    """The id is the one Go's flag rules find, wherever it stands among the flags."""
    hold(node)
    (node / "state" / "c1").rmdir()  # the fake runtime removes the last word's state only
    assert main_mod.main(["--root", str(node / "state"), *argv]) == 0
    assert not (node / "leases" / "c1.json").exists()


SimHostFactory = Callable[..., "SimHost"]


def test_create_failing_after_the_lease_gives_it_back(
        sim_host_factory: SimHostFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A later modifier fails (an unknown workload policy): the error propagates, the lease
    this create took is released and config.json keeps the profile token."""
    host = sim_host_factory("dgx-a100-mig")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(host.config_path))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.2.1", "root": {"path": "rootfs"},
        "annotations": {"ai.scheduling.policy": "no-such-policy"},
        "process": {"args": ["sh"], "cwd": "/", "env": ["NVIDIA_VISIBLE_DEVICES=mig-1g.10gb"]},
    }))
    invocation = argv_mod.parse(["create", "--bundle", str(bundle), "c9"])
    from gpu_core import config as config_mod

    with pytest.raises(ShimError, match="no-such-policy") as caught:
        main_mod.prepare(invocation, config_mod.load(), "/usr/bin/runc")
    assert caught.value.stage != "mig"
    assert lease_files.read_all(str(host.dir / "run" / "leases")).leases == ()
    assert "mig-1g.10gb" in (bundle / "config.json").read_text()


CREATE_PROBE = """
import json, sys
from gpu_core import config
from runtime_shim import argv, main
""" + COUNT_INITS + """
main.prepare(argv.parse(["create", "--bundle", sys.argv[1], "c1"]), config.load(), "/bin/true")
print(json.dumps([len(first_inits), sorted(m for m in ("pynvml", "ctypes.util")
                                           if m in sys.modules)]))
"""


@pytest.mark.parametrize(("topology", "token"), [("dgx-a100", "0"),
                                                 ("dgx-a100-mig", "mig-1g.10gb")])
def test_gpu_create_inits_nvml_once_without_pynvml(
        sim_host_factory: SimHostFactory, tmp_path: Path, topology: str, token: str) -> None:
    """A GPU create (a GPU index, or a MIG profile that takes a lease) reads NVML through
    gpu_core.nvml_lib, initialising it once: neither pynvml nor ctypes.util (about 31 ms) is
    imported."""
    host = sim_host_factory(topology)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.2.1", "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/", "env": [f"NVIDIA_VISIBLE_DEVICES={token}"]},
    }))
    done = subprocess.run([sys.executable, "-c", CREATE_PROBE, str(bundle)], capture_output=True,
                          text=True, check=True, env={**os.environ, **host.env()})
    assert json.loads(done.stdout) == [1, []]
