"""Real containers through the shim with runc and crun: pass-through, cgroup parent, oom."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from containers import Bundle, Runtime, sha256

pytestmark = pytest.mark.e2e

MakeBundle = Callable[..., Bundle]
MakeRuntime = Callable[..., Runtime]
WriteConfig = Callable[[str], Path]


@pytest.mark.parametrize("mode", ["hook", "spec"])
def test_plain_run_behaves_as_runc_and_keeps_config_bytes(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig,
        low_level: str, mode: str) -> None:
    """A non-GPU busybox container prints the same through the shim as directly, and its
    config.json keeps its sha256 (hook mode and spec mode alike)."""
    bundle = make_bundle(["/bin/sh", "-c", "echo hello from $(hostname); exit 3"])
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\nmode: {mode}\n"),
                           low_level)
    before = sha256(bundle.config_path)
    direct = runtime.run(bundle, through_shim=False)
    shimmed = runtime.run(bundle)
    assert (shimmed.returncode, shimmed.stdout) == (direct.returncode, direct.stdout)
    assert shimmed.returncode == 3 and shimmed.stdout == "hello from runc\n"
    assert sha256(bundle.config_path) == before


def test_configured_parent_shows_in_proc_self_cgroup(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig,
        low_level: str) -> None:
    """With cgroup.parent ai-workload.slice (cgroupfs driver) the container's cgroups sit under
    it."""
    bundle = make_bundle(["/bin/cat", "/proc/self/cgroup"])
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\n"
                                        "cgroup: {parent: ai-workload.slice}\n"), low_level)
    result = runtime.run(bundle, container_id=f"cg-{low_level}")
    assert result.returncode == 0, result.stderr
    memory = [line for line in result.stdout.splitlines() if ":memory:" in line]
    assert memory == [f"{memory[0].split(':')[0]}:memory:/ai-workload.slice/cg-{low_level}"]


def raise_own_oom_score() -> None:
    """Run the child at oom_score_adj 100: raising needs no capability, lowering would."""
    with open("/proc/self/oom_score_adj", "w") as stream:
        stream.write("100")


def test_annotation_policy_clamped_without_cap_sys_resource(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig,
        tmp_path: Path, low_level: str) -> None:
    """ai.scheduling.policy=guaranteed asks -800; lacking CAP_SYS_RESOURCE the container starts
    with the runtime's own value and the log says it was clamped."""
    bundle = make_bundle(["/bin/cat", "/proc/self/oom_score_adj"],
                         annotations={"ai.scheduling.policy": "guaranteed"})
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\n"), low_level)
    result = runtime.run(bundle, preexec_fn=raise_own_oom_score)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "100"
    log = (tmp_path / "shim.log").read_text()
    assert "policy guaranteed value -800 clamped to 100: no CAP_SYS_RESOURCE" in log


def test_runc_alone_fails_with_the_unclamped_value(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig) -> None:
    """Without the clamp runc refuses to start: the failure the oom modifier prevents."""
    bundle = make_bundle(["/bin/true"])
    bundle.edit(lambda spec: spec["process"].__setitem__("oomScoreAdj", -800))
    runtime = make_runtime(write_config("runtimes: [runc]\n"))
    result = runtime.run(bundle, through_shim=False, preexec_fn=raise_own_oom_score)
    assert result.returncode != 0 and "oom_score_adj" in result.stderr


def test_lifecycle_commands_pass_through(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig,
        low_level: str, tmp_path: Path) -> None:
    """create, start, state, list, kill and delete all work through the shim."""
    bundle = make_bundle(["/bin/sleep", "60"])
    runtime = make_runtime(write_config(f"runtimes: [{low_level}]\n"), low_level)
    cid = f"life-{low_level}"
    runtime.started.append(cid)
    with open(tmp_path / "out", "w") as out:
        created = subprocess.run(runtime.command(["create", "--bundle", str(bundle.path), cid]),
                                 stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                 env=runtime.env(), timeout=60, check=False)
    assert created.returncode == 0, (tmp_path / "out").read_text()
    assert json.loads(runtime.call(["state", cid]).stdout)["status"] == "created"
    assert runtime.call(["start", cid]).returncode == 0
    assert json.loads(runtime.call(["state", cid]).stdout)["status"] == "running"
    assert cid in runtime.call(["list"]).stdout
    assert runtime.call(["kill", cid, "KILL"]).returncode == 0
    for _ in range(50):
        if json.loads(runtime.call(["state", cid]).stdout)["status"] == "stopped":
            break
    assert runtime.call(["delete", cid]).returncode == 0
    assert runtime.call(["state", cid]).returncode != 0


def test_bad_config_names_both_keys_and_starts_nothing(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig) -> None:
    """A config.yaml with two bad keys: one error line naming both; no container exists."""
    bundle = make_bundle(["/bin/true"])
    runtime = make_runtime(write_config("runtimes: [runc]\ncgroups: {}\nhook: {stage: later}\n"))
    before = sha256(bundle.config_path)
    result = runtime.run(bundle, container_id="never")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-container-runtime: config: ")
    assert "cgroups: unknown key" in lines[0] and "hook.stage" in lines[0]
    assert sha256(bundle.config_path) == before
    listing = subprocess.run(["runc", "--root", str(runtime.root), "list", "-q"],
                             capture_output=True, text=True, check=True)
    assert listing.stdout.strip() == ""


def test_shim_errors_reach_runc_log_file(
        make_runtime: MakeRuntime, write_config: WriteConfig, tmp_path: Path) -> None:
    """An error before runc runs is written to --log, where containerd reads it."""
    runtime = make_runtime(write_config("runtimes: [runc]\n"))
    log = tmp_path / "runc-log.json"
    result = runtime.call(["--log", str(log), "--log-format", "json", "create", "--bundle",
                           str(tmp_path / "nope"), "x"])
    assert result.returncode != 0
    assert json.loads(log.read_text().splitlines()[-1])["level"] == "error"


def test_bundle_directory_named_create(
        make_bundle: MakeBundle, make_runtime: MakeRuntime, write_config: WriteConfig,
        tmp_path: Path) -> None:
    """A bundle literally named 'create' is a bundle, not the command."""
    bundle = make_bundle(["/bin/cat", "/proc/self/cgroup"], name="create")
    runtime = make_runtime(write_config("runtimes: [runc]\ncgroup: {parent: ai-workload.slice}\n"))
    result = runtime.call(["run", "--bundle", "create", "named-create"], cwd=tmp_path)
    runtime.started.append("named-create")
    assert result.returncode == 0, result.stderr
    assert "/ai-workload.slice/named-create" in result.stdout
    assert os.path.basename(bundle.path) == "create"
