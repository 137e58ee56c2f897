"""The shim's entry point: pass-through, the create path, and errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_subprocess import FakeProcess

from runtime_shim import main as main_mod

REPO = Path(__file__).resolve().parents[2]


class Exec(Exception):
    """Raised by the fake execv so the test sees what would have run."""


@pytest.fixture
def fake_runc(tmp_path: Path) -> Path:
    runc = tmp_path / "bin" / "runc"
    runc.parent.mkdir()
    runc.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/argv\"\n")
    runc.chmod(0o755)
    return runc


@pytest.fixture
def shim_config(tmp_path: Path, fake_runc: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"runtimes: [{fake_runc}]\nlog: {{file: {tmp_path / 'shim.log'}}}\n"
                    "cgroup: {parent: ai-workload.slice}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(path))
    return path


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, args: list[str]) -> None:
        calls.append((path, list(args)))
        raise Exec

    monkeypatch.setattr(os, "execv", fake_execv)
    return calls


def make_bundle(tmp_path: Path, spec: dict[str, Any]) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


@pytest.mark.parametrize("argv", [["state", "x"], ["--root", "/r", "kill", "x", "KILL"],
                                  ["delete", "--force", "x"], ["list"]])
def test_pass_through_execs_runtime_with_same_args(
        argv: list[str], shim_config: Path, fake_runc: Path, fp: FakeProcess,
        execs: list[tuple[str, list[str]]]) -> None:
    """Pass-through commands exec runc with argv unchanged and start no other process."""
    with pytest.raises(Exec):
        main_mod.main(argv)
    assert execs == [(str(fake_runc), [str(fake_runc), *argv])]


HEAVY_PROBE = """
import os, sys
from runtime_shim import lowlevel, main
def report(self, args):
    heavy = ("yaml", "jsonschema", "pynvml", "cffi", "libnvc_bindings", "runtime_shim.pipeline")
    print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
    sys.exit(0)
lowlevel.LowLevelRuntime.exec = report
main.main(["state", "x"])
"""


def test_pass_through_imports_nothing_heavy(shim_config: Path) -> None:
    """With the validated config cached, state imports no yaml, jsonschema, pynvml or pipeline."""
    env = {**os.environ, "GPU_CONTAINER_SHIM_CONFIG": str(shim_config)}
    runs = [subprocess.run([sys.executable, "-c", HEAVY_PROBE], capture_output=True, text=True,
                           check=True, env=env).stdout.strip() for _ in range(2)]
    assert "jsonschema" in runs[0]  # the first call validates and fills the cache
    assert runs[1] == "[]"


def test_plain_create_leaves_config_bytes_unchanged(
        tmp_path: Path, fake_runc: Path, fp: FakeProcess,
        execs: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-GPU container with nothing to change keeps config.json byte for byte."""
    config = tmp_path / "plain.yaml"
    config.write_text(f"runtimes: [{fake_runc}]\nlog: {{file: ''}}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    bundle = make_bundle(tmp_path, {"ociVersion": "1.0.2", "process": {"args": ["true"]},
                                    "linux": {}})
    before = hashlib.sha256((bundle / "config.json").read_bytes()).hexdigest()
    with pytest.raises(Exec):
        main_mod.main(["create", "--bundle", str(bundle), "c1"])
    assert hashlib.sha256((bundle / "config.json").read_bytes()).hexdigest() == before


def test_create_rewrites_and_logs_one_line(
        tmp_path: Path, shim_config: Path, fp: FakeProcess,
        execs: list[tuple[str, list[str]]]) -> None:
    """create runs the pipeline, writes config.json and logs id, changes and duration."""
    bundle = make_bundle(tmp_path, {"ociVersion": "1.0.2", "process": {"args": ["true"]},
                                    "linux": {}})
    with pytest.raises(Exec):
        main_mod.main(["create", "-b", str(bundle), "c1"])
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["linux"]["cgroupsPath"] == "/ai-workload.slice/c1"
    log = (tmp_path / "shim.log").read_text().splitlines()
    assert len(log) == 1 and "id=c1" in log[0] and "cgroup: parent" in log[0]
    assert "duration_ms=" in log[0]


def test_create_line_times_each_phase(
        tmp_path: Path, shim_config: Path, execs: list[tuple[str, list[str]]]) -> None:
    """The create line carries load, request, modifiers and write milliseconds (no discovery
    for a container without GPUs) before the total, for gpu-ctk metrics."""
    bundle = make_bundle(tmp_path, {"ociVersion": "1.0.2", "process": {"args": ["true"]},
                                    "linux": {}})
    with pytest.raises(Exec):
        main_mod.main(["create", "-b", str(bundle), "c1"])
    [line] = (tmp_path / "shim.log").read_text().splitlines()
    assert re.search(r" load_ms=[\d.]+ request_ms=[\d.]+ modifiers_ms=[\d.]+ write_ms=[\d.]+ "
                     r"duration_ms=[\d.]+$", line), line


def test_failed_create_is_logged_with_its_stage(
        tmp_path: Path, shim_config: Path, execs: list[tuple[str, list[str]]]) -> None:
    """A create the shim refuses is one error line in our log: the stage and the message."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_bytes(b'{"process": ')
    assert main_mod.main(["create", "-b", str(bundle), "c1"]) == 1
    [line] = (tmp_path / "shim.log").read_text().splitlines()
    assert " level=error cmd=create id=c1 " in line and " gpu=unknown " in line
    assert ' error_stage=config.json msg="gpu-container-runtime: config.json: ' in line


def test_create_rewrites_the_bundle_runc_changes_into(
        tmp_path: Path, shim_config: Path, fp: FakeProcess,
        execs: list[tuple[str, list[str]]]) -> None:
    """``link/../bundle`` is where the kernel takes runc's chdir (``link``'s target's parent),
    not the ``bundle`` beside ``link`` that cleaning the text would give."""
    spec = {"ociVersion": "1.0.2", "process": {"args": ["true"]}, "linux": {}}
    beside = make_bundle(tmp_path, spec)
    far = tmp_path / "far"
    (far / "x").mkdir(parents=True)
    real = make_bundle(far, spec)
    (tmp_path / "link").symlink_to(far / "x")
    with pytest.raises(Exec):
        main_mod.main(["create", "--bundle", str(tmp_path / "link" / ".." / "bundle"), "c1"])
    assert json.loads((real / "config.json").read_text())["linux"]["cgroupsPath"]
    assert json.loads((beside / "config.json").read_text()) == spec


def test_a_config_json_spelled_with_other_cases_is_written_back_in_one_spelling(
        tmp_path: Path, shim_config: Path, fp: FakeProcess,
        execs: list[tuple[str, list[str]]]) -> None:
    """A rewrite writes runc's reading of the file with each key once, as its field's tag, so
    runc reads exactly the values the pipeline saw and edited."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(
        '{"ociVersion":"1.0.2","Process":{"Args":["true"]},"process":{"cwd":"/"},'
        '"LINUX":{"cgroupsPath":"/old"},"x-vendor":{"Keep":1}}')
    with pytest.raises(Exec):
        main_mod.main(["create", "--bundle", str(bundle), "c1"])
    assert json.loads((bundle / "config.json").read_text()) == {
        "ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/"},
        "linux": {"cgroupsPath": "/ai-workload.slice/old"}, "x-vendor": {"Keep": 1}}


def test_bad_config_json_is_one_line_and_untouched(
        tmp_path: Path, shim_config: Path, execs: list[tuple[str, list[str]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed config.json stops the create with one line; runc never runs."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_bytes(b'{"process": ')
    assert main_mod.main(["create", "-b", str(bundle), "c1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpu-container-runtime: config.json: ") and err.count("\n") == 1
    assert execs == [] and (bundle / "config.json").read_bytes() == b'{"process": '


def test_errors_go_to_runc_log_in_json(
        tmp_path: Path, shim_config: Path, execs: list[tuple[str, list[str]]]) -> None:
    """With --log and --log-format json our error is a runc-style JSON line there."""
    log = tmp_path / "runc.log"
    assert main_mod.main(["--log", str(log), "--log-format", "json", "create", "-b",
                          str(tmp_path / "missing"), "c1"]) == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and entry["msg"].startswith("gpu-container-runtime: ")


def test_config_with_two_bad_keys_names_both(
        tmp_path: Path, execs: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid config.yaml fails closed, naming every bad key on one line."""
    config = tmp_path / "bad.yaml"
    config.write_text("runtimes: [runc]\nbogus: 1\nhook: {timeout: soon}\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    assert main_mod.main(["run", "c1"]) == 1
    err = capsys.readouterr().err
    assert "bogus: unknown key" in err and "hook.timeout" in err and err.count("\n") == 1
    assert execs == []


def test_missing_runtime_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        execs: list[tuple[str, list[str]]]) -> None:
    """No configured runtime on PATH: one line naming what was tried."""
    config = tmp_path / "c.yaml"
    config.write_text("runtimes: [no-such-runc]\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    assert main_mod.main(["state", "x"]) == 1
    assert "runtime: no low-level runtime found: tried no-such-runc" in capsys.readouterr().err


def test_real_exec_hands_argv_to_runtime(tmp_path: Path, shim_config: Path,
                                         fake_runc: Path) -> None:
    """Run as a real process, the shim execs the runtime which sees the same argv."""
    env = {**os.environ, "GPU_CONTAINER_SHIM_CONFIG": str(shim_config)}
    subprocess.run([sys.executable, "-m", "runtime_shim", "--root", "/r", "state", "abc"],
                   check=True, env=env, cwd=REPO)
    assert (fake_runc.parent / "argv").read_text().split() == ["--root", "/r", "state", "abc"]


# --- a bad config.yaml: pass-through still reaches the runtime; create/run fail closed ---------

BAD_CONFIGS = [("unknown key", "runtimes: [runc]\nbogus: 1\n", "bogus: unknown key"),
               ("yaml syntax", "runtimes: [runc\n", "config"),
               ("wrong type", "hook: {timeout: soon}\n", "hook.timeout")]


@pytest.fixture
def default_runc(fake_runc: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The fake runc as the first `runc` on PATH: the default runtime a bad config falls to;
    the defaults' log file is under tmp_path (not the host's)."""
    from gpu_core import config as config_mod

    monkeypatch.setenv("PATH", f"{fake_runc.parent}:/usr/bin:/bin")
    defaults = config_mod.parse(f"log: {{file: {tmp_path / 'ours.log'}}}\n", "defaults")
    monkeypatch.setattr(config_mod, "defaults", lambda: defaults)
    return fake_runc


@pytest.mark.parametrize(("description", "text", "problem"), BAD_CONFIGS,
                         ids=[c[0] for c in BAD_CONFIGS])
@pytest.mark.parametrize("argv", [["state", "x"], ["kill", "x", "KILL"], ["delete", "-f", "x"],
                                  ["list"], ["--root", "/r", "start", "x"]])
def test_bad_config_passes_through_to_the_default_runtime_with_a_warning(
        tmp_path: Path, default_runc: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], execs: list[tuple[str, list[str]]],
        description: str, text: str, problem: str, argv: list[str]) -> None:
    """Engines must be able to stop and clean up containers while config.yaml is broken: the
    call reaches runc (the default runtime) unchanged, and one warning names the problem."""
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    with pytest.raises(Exec):
        main_mod.main(argv)
    assert execs == [(str(default_runc), [str(default_runc), *argv])]
    err = capsys.readouterr().err
    assert err.startswith("gpu-container-runtime: warning: config: ") and problem in err
    assert err.count("\n") == 1 and "passing " in err


def test_bad_config_warning_goes_to_the_runc_log(
        tmp_path: Path, default_runc: Path, monkeypatch: pytest.MonkeyPatch,
        execs: list[tuple[str, list[str]]]) -> None:
    """With --log the warning is also a runc-style line there, at level warning."""
    config = tmp_path / "bad.yaml"
    config.write_text("bogus: 1\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    log = tmp_path / "runc.log"
    with pytest.raises(Exec):
        main_mod.main(["--log", str(log), "--log-format", "json", "state", "x"])
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "warning" and "bogus: unknown key" in entry["msg"]


@pytest.mark.parametrize("command", ["create", "run"])
def test_bad_config_still_fails_a_gpu_create_closed(
        tmp_path: Path, default_runc: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], execs: list[tuple[str, list[str]]],
        command: str) -> None:
    """create/run of a GPU container with a bad config.yaml: one error line, config.json
    untouched, runc never runs."""
    config = tmp_path / "bad.yaml"
    config.write_text("bogus: 1\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    bundle = make_bundle(tmp_path, {"process": {"env": ["NVIDIA_VISIBLE_DEVICES=0"]}})
    before = (bundle / "config.json").read_bytes()
    assert main_mod.main([command, "-b", str(bundle), "c1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpu-container-runtime: config: ") and "warning" not in err
    assert execs == [] and (bundle / "config.json").read_bytes() == before


# --- --version and --help: ours first, then the runtime's lines unchanged ----------------------

@pytest.mark.parametrize(("argv", "first"), [
    (["--version"], "gpu-container-runtime version "), (["-v"], "gpu-container-runtime version "),
    (["--help"], "gpu-container-runtime: an OCI runtime shim"), (["-h"], "gpu-container-runtime:"),
    (["help"], "gpu-container-runtime:")])
def test_version_and_help_print_ours_then_exec_the_runtime(
        shim_config: Path, fake_runc: Path, capsys: pytest.CaptureFixture[str],
        execs: list[tuple[str, list[str]]], argv: list[str], first: str) -> None:
    """Our line(s) go out first; then the runtime runs with the same argv, printing its own."""
    with pytest.raises(Exec):
        main_mod.main(argv)
    assert capsys.readouterr().out.startswith(first)
    assert execs == [(str(fake_runc), [str(fake_runc), *argv])]


def test_version_keeps_the_runtimes_lines_unchanged(tmp_path: Path) -> None:
    """As a real process: our version line, then runc's lines exactly as runc printed them."""
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\nprintf 'runc version 1.1.5\\ncommit: v1.1.5\\nspec: 1.0.2\\n'\n")
    runc.chmod(0o755)
    config = tmp_path / "c.yaml"
    config.write_text(f"runtimes: [{runc}]\nlog: {{file: ''}}\n")
    done = subprocess.run([sys.executable, "-m", "runtime_shim", "--version"], capture_output=True,
                          text=True, check=True, cwd=REPO,
                          env={**os.environ, "GPU_CONTAINER_SHIM_CONFIG": str(config)})
    from gpu_core.about import VERSION
    assert done.stdout == (f"gpu-container-runtime version {VERSION}\nrunc version 1.1.5\n"
                           "commit: v1.1.5\nspec: 1.0.2\n")


def test_state_is_not_a_version_request() -> None:
    """A --version after the command belongs to the command: nothing of ours is printed."""
    from runtime_shim import argv as argv_mod

    assert main_mod.about_request(argv_mod.parse(["state", "--version"])) == ""


def test_bad_config_warning_goes_to_our_default_log(
        tmp_path: Path, default_runc: Path, monkeypatch: pytest.MonkeyPatch,
        execs: list[tuple[str, list[str]]]) -> None:
    """The file's own log.file cannot be trusted, so the warning goes to the default log."""
    ours = tmp_path / "ours.log"
    config = tmp_path / "bad.yaml"
    config.write_text("bogus: 1\n")
    monkeypatch.setenv("GPU_CONTAINER_SHIM_CONFIG", str(config))
    with pytest.raises(Exec):
        main_mod.main(["delete", "c9"])
    (line,) = ours.read_text().splitlines()
    assert "level=warning cmd=delete id=c9 event=config-invalid" in line
    assert "bogus: unknown key" in line


def test_argv_runc_builds_read_differently_is_refused_in_one_line(
        tmp_path: Path, shim_config: Path, execs: list[tuple[str, list[str]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """``create ID -b B --``: upstream runc refuses it, distribution builds run bundle B; the
    shim refuses it itself rather than guess, and runc never runs."""
    bundle = make_bundle(tmp_path, {"ociVersion": "1.0.2", "process": {"args": ["true"]}})
    before = (bundle / "config.json").read_bytes()
    assert main_mod.main(["create", "c1", "-b", str(bundle), "--"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpu-container-runtime: argv: create: runc builds read these "
                          "arguments differently") and err.count("\n") == 1
    assert execs == [] and (bundle / "config.json").read_bytes() == before


def injected_spec(env: str) -> dict[str, Any]:
    return {"ociVersion": "1.0.2", "process": {"args": ["true"], "env": ["PATH=/bin", env]},
            "root": {"path": "rootfs"},
            "linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195,
                                   "minor": 0}]}}


def test_build_context_records_a_cdi_injection(tmp_path: Path) -> None:
    from gpu_core import config as config_mod

    ctx = main_mod.build_context(injected_spec("NVIDIA_VISIBLE_DEVICES=void"),
                                 config_mod.parse("", "t"), bundle=str(tmp_path),
                                 container_id="c", systemd_cgroup=False)
    assert ctx.request is None and ctx.injected is not None
    assert ctx.injected.gpu_minors == (0,) and ctx.gpu


def test_unresolvable_request_beside_an_injection_is_ignored(tmp_path: Path) -> None:
    """A CDI name our spec dirs lack does not fail a container the engine already gave it."""
    from gpu_core import config as config_mod

    config = config_mod.parse(f"requests: {{cdi_spec_dirs: [{tmp_path}]}}\n", "t")
    spec = injected_spec("NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=9")
    ctx = main_mod.build_context(spec, config, bundle=str(tmp_path), container_id="c",
                                 systemd_cgroup=False)
    assert ctx.request is None and ctx.gpu


def test_unresolvable_request_without_an_injection_still_fails(tmp_path: Path) -> None:
    from gpu_core import config as config_mod
    from gpu_core.errors import ShimError

    config = config_mod.parse(f"requests: {{cdi_spec_dirs: [{tmp_path}]}}\n", "t")
    spec = injected_spec("NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=9")
    spec["linux"]["devices"] = []
    with pytest.raises(ShimError, match="unresolvable CDI device"):
        main_mod.build_context(spec, config, bundle=str(tmp_path), container_id="c",
                               systemd_cgroup=False)
