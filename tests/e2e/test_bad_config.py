"""A config.yaml broken while containers run: engines can still inspect, stop and remove them
through the shim (the default runtime, runc, gets each call), while a new create fails closed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from containers import Bundle, Runtime

pytestmark = pytest.mark.e2e


def test_state_kill_delete_reach_runc_with_a_broken_config(
        make_bundle: Callable[..., Bundle], make_runtime: Callable[..., Runtime],
        tmp_path: Path) -> None:
    """Created under a good config; then the file breaks: state, kill and delete still work,
    each with a warning, and a GPU create fails with the config error."""
    config = tmp_path / "config.yaml"
    config.write_text(f"runtimes: [runc]\nlog: {{file: {tmp_path / 'shim.log'}}}\n")
    runtime = make_runtime(config)
    bundle = make_bundle(["/bin/sleep", "30"])
    cid = "bad-config-c1"
    runtime.started.append(cid)
    with open(tmp_path / "out", "w") as out:  # the container keeps its stdio: no pipes
        created = subprocess.run(runtime.command(["create", "--bundle", str(bundle.path), cid]),
                                 stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                 env=runtime.env(), timeout=60, check=False)
    assert created.returncode == 0, (tmp_path / "out").read_text()
    config.write_text("runtimes: [runc]\nbogus: 1\n")
    state = runtime.call(["state", cid])
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["status"] == "created"
    assert "warning: config: " in state.stderr and "bogus: unknown key" in state.stderr
    for args in (["kill", cid, "KILL"], ["delete", "--force", cid]):
        done = runtime.call(args)
        assert done.returncode == 0, done.stderr
        assert "warning: config: " in done.stderr
    assert runtime.call(["state", cid], through_shim=False).returncode != 0
    gpu = make_bundle(["/bin/true"], env=["NVIDIA_VISIBLE_DEVICES=0"])
    refused = runtime.call(["create", "--bundle", str(gpu.path), "bad-config-c2"])
    assert refused.returncode == 1
    assert refused.stderr.startswith("gpu-container-runtime: config: ")
