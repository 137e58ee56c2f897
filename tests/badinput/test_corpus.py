"""The bad-input corpus: config.json given to the shim, the OCI state given to the hook, and the
shim's config.yaml, each malformed one way.

Every case must fail the same way: a non-zero exit, exactly one line on stderr from our command
naming the field (or the position) at fault, config.json byte-identical, and the low-level
runtime never reached.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import Workspace

Build = Callable[["Workspace"], Optional[bytes]]
"""Makes a case's input in the workspace: the bytes to feed (None: the case set files up)."""


@dataclass(frozen=True)
class Case:
    """One bad input: where it goes, how to make it, and what the error line must say."""

    id: str
    target: str
    """``config.json`` (the shim's create), ``state`` (the hook's stdin) or ``config.yaml``."""
    build: Build
    expect: str


def raw(data: bytes) -> Build:
    return lambda ws: data


def spec_with(change: Callable[[dict[str, Any]], None]) -> Build:
    """The valid GPU config.json with ``change`` applied."""
    def build(ws: Workspace) -> bytes:
        spec = ws.good_spec()
        change(spec)
        return json.dumps(spec).encode()
    return build


def good_text(ws: Workspace) -> str:
    return ws.config_json.read_text()


def text_with(old: str, new: str) -> Build:
    """The valid config.json text with one piece of text replaced (for what JSON cannot say)."""
    def build(ws: Workspace) -> bytes:
        text = json.dumps(ws.good_spec())
        assert old in text
        return text.replace(old, new, 1).encode()
    return build


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted path (``process.env``) in a spec, creating objects on the way."""
    def change(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


def env_with(*entries: str) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        spec["process"]["env"] = [*spec["process"]["env"], *entries]
    return change


def special_file(kind: str) -> Build:
    """Replace config.json by a FIFO, a directory, a symlink to a good copy, or nothing."""
    def build(ws: Workspace) -> None:
        good = ws.tmp / "good-config.json"
        ws.config_json.unlink()
        if kind == "fifo":
            os.mkfifo(ws.config_json)
        elif kind == "directory":
            ws.config_json.mkdir()
        elif kind == "symlink":
            ws.config_json.symlink_to(good)
    return build


CONFIG_JSON = (
    Case("empty", "config.json", raw(b""), "invalid JSON: Expecting value: line 1 column 1"),
    Case("whitespace-only", "config.json", raw(b" \n\t\n"), "invalid JSON: Expecting value"),
    Case("truncated", "config.json", lambda ws: good_text(ws)[:300].encode(),
         "invalid JSON: "),
    Case("trailing-garbage", "config.json", lambda ws: good_text(ws).encode() + b" x",
         "invalid JSON: Extra data"),
    Case("two-documents", "config.json", lambda ws: good_text(ws).encode() * 2,
         "invalid JSON: Extra data"),
    Case("single-quoted", "config.json", raw(b"{'ociVersion': '1.0.2'}"),
         "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    Case("top-level-array", "config.json", raw(b"[]"), "expected a JSON object, got list"),
    Case("top-level-number", "config.json", raw(b"42"), "expected a JSON object, got int"),
    Case("top-level-null", "config.json", raw(b"null"), "expected a JSON object, got NoneType"),
    Case("not-utf8", "config.json", raw(b'{"ociVersion": "\xff\xfe"}'),
         "invalid JSON: 'utf-8' codec can't decode byte 0xff"),
    Case("50-megabytes", "config.json",
         lambda ws: good_text(ws).encode() + b" " * (50 << 20),
         "bytes exceeds the 16777216 byte limit"),
    Case("nested-100k-arrays", "config.json",
         raw(b'{"annotations": {"a": "b"}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
         "nested too deeply"),
    Case("nested-100k-objects", "config.json",
         raw(b'{"x": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001), "nested too deeply"),
    # A repeated or differently spelled key is no error (runc merges it: tests/adversarial),
    # but a value of a type runc refuses is, under whatever spelling it hides:
    Case("oom-score-adj-string-other-spelling", "config.json",
         spec_with(setter("process.OOMScoreAdj", "-1000")),
         "config.json: process.oomScoreAdj: expected an integer, got str"),
    Case("oom-score-adj-fraction", "config.json", spec_with(setter("process.oomScoreAdj", 1.5)),
         "config.json: process.oomScoreAdj: expected an integer, got float"),
    Case("env-string-in-a-repeated-process", "config.json",
         lambda ws: good_text(ws).replace('"process"', '"PROCESS": {"Env": "A=1"}, "process"',
                                          1).encode(),
         "config.json: process.env: expected a list, got str"),
    Case("root-path-number-other-spelling", "config.json", spec_with(setter("Root", {"PATH": 7})),
         "config.json: root.path: expected a string, got int"),
    Case("uid-out-of-range", "config.json", spec_with(setter("process.user.uid", 2 ** 32)),
         "config.json: process.user.uid: 4294967296 is out of range"),
    Case("annotation-not-string", "config.json",
         spec_with(setter("Annotations", {"ai.scheduling.policy": 1})),
         "config.json: annotations['ai.scheduling.policy']: expected a string, got int"),
    Case("device-rule-allow-not-boolean", "config.json",
         spec_with(setter("linux.resources.devices", [{"allow": "yes", "access": "rwm"}])),
         "config.json: linux.resources.devices[0].allow: expected a boolean, got str"),
    Case("bounding-not-list-other-spelling", "config.json",
         spec_with(setter("process.Capabilities.BOUNDING", "CAP_SYS_ADMIN")),
         "config.json: process.capabilities.bounding: expected a list, got str"),
    Case("oom-score-adj-string-long-s-spelling", "config.json",
         spec_with(setter("proce\u017f\u017f.oomScoreAdj", "5")),
         "config.json: process.oomScoreAdj: expected an integer, got str"),
    Case("nan", "config.json", text_with('"terminal": true', '"terminal": NaN'),
         "NaN is not a JSON number"),
    Case("infinity", "config.json", text_with('"terminal": true', '"terminal": -Infinity'),
         "-Infinity is not a JSON number"),
    Case("number-overflowing-to-infinity", "config.json",
         text_with('"terminal": true', '"terminal": 1e999'), "number 1e999 is out of range"),
    Case("unpaired-surrogate", "config.json", text_with('"TERM=xterm"', '"TERM=\\ud800"'),
         r"string with an unpaired surrogate '\ud800' cannot be written as UTF-8"),
    Case("process-not-object", "config.json", spec_with(setter("process", [])),
         "config.json: process: expected an object, got list"),
    Case("env-not-list", "config.json", spec_with(setter("process.env", "A=1")),
         "config.json: process.env: expected a list, got str"),
    Case("env-item-not-string", "config.json", spec_with(env_with(7)),  # type: ignore[arg-type]
         "config.json: process.env[3]: expected a string, got int"),
    Case("capabilities-not-object", "config.json",
         spec_with(setter("process.capabilities", ["CAP_SYS_ADMIN"])),
         "config.json: process.capabilities: expected an object, got list"),
    Case("bounding-not-list", "config.json",
         spec_with(setter("process.capabilities.bounding", "CAP_SYS_ADMIN")),
         "config.json: process.capabilities.bounding: expected a list, got str"),
    Case("mounts-not-list", "config.json", spec_with(setter("mounts", {})),
         "config.json: mounts: expected a list, got dict"),
    Case("mount-not-object", "config.json", spec_with(setter("mounts", ["/dev/null"])),
         "config.json: mounts[0]: expected an object, got str"),
    Case("mount-destination-not-string", "config.json",
         spec_with(setter("mounts", [{"source": "/dev/null", "destination": 5}])),
         "config.json: mounts[0].destination: expected a string"),
    Case("hooks-not-object", "config.json", spec_with(setter("hooks", [])),
         "config.json: hooks: expected an object, got list"),
    Case("prestart-hooks-not-list", "config.json", spec_with(setter("hooks.prestart", "x")),
         "config.json: hooks.prestart: expected a list, got str"),
    Case("linux-not-object", "config.json", spec_with(setter("linux", "x")),
         "config.json: linux: expected an object, got str"),
    Case("resources-not-object", "config.json", spec_with(setter("linux.resources", [])),
         "config.json: linux.resources: expected an object, got list"),
    Case("device-rules-not-list", "config.json",
         spec_with(setter("linux.resources.devices", {})),
         "config.json: linux.resources.devices: expected a list, got dict"),
    Case("linux-devices-not-list", "config.json", spec_with(setter("linux.devices", "x")),
         "config.json: linux.devices: expected a list, got str"),
    Case("unknown-device", "config.json", spec_with(env_with("NVIDIA_VISIBLE_DEVICES=abc")),
         "request: unknown device abc;"),
    Case("device-index-out-of-range", "config.json",
         spec_with(env_with("NVIDIA_VISIBLE_DEVICES=99")),
         "request: unknown device 99; this host has GPUs 0-7"),
    Case("malformed-requirement", "config.json",
         spec_with(env_with("NVIDIA_REQUIRE_CUDA=cuda>>12")),
         "requirements: invalid condition cuda>>12: unknown operator >>"),
    Case("legacy-cuda-version-not-a-version", "config.json",
         spec_with(env_with("CUDA_VERSION=9.0.bar")),
         "request: CUDA_VERSION: invalid CUDA version 9.0.bar"),
    Case("unsupported-capability", "config.json",
         spec_with(env_with("NVIDIA_DRIVER_CAPABILITIES=compute,telepathy")),
         "request: NVIDIA_DRIVER_CAPABILITIES: unsupported capability telepathy"),
    Case("mig-config-unprivileged", "config.json",
         spec_with(env_with("NVIDIA_MIG_CONFIG_DEVICES=all")),
         "request: cannot set NVIDIA_MIG_CONFIG_DEVICES in an unprivileged container"),
    Case("unknown-policy-annotation", "config.json",
         spec_with(setter("annotations", {"ai.scheduling.policy": "turbo"})),
         "policy: unknown policy 'turbo' from annotation"),
    Case("fifo", "config.json", special_file("fifo"), "config.json: not a regular file"),
    Case("directory", "config.json", special_file("directory"),
         "config.json: not a regular file"),
    Case("symlink", "config.json", special_file("symlink"),
         "config.json: Too many levels of symbolic links"),
    Case("missing", "config.json", special_file("missing"),
         "config.json: No such file or directory"),
)


def state(ws: Workspace, **fields: Any) -> bytes:
    """A state for the workspace's bundle with ``fields`` replaced (None drops a field)."""
    document: dict[str, Any] = {"ociVersion": "1.0.2", "id": "bad-input", "status": "creating",
                                "pid": 1, "bundle": str(ws.bundle)}
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def another_gpu_bundle(ws: Workspace) -> bytes:
    """A second container's bundle (valid, GPU) with a host process's pid."""
    other = ws.tmp / "other-bundle"
    other.mkdir()
    (other / "config.json").write_bytes(ws.config_json.read_bytes())
    return state(ws, bundle=str(other), pid=os.getpid())


def exited_pid(ws: Workspace) -> bytes:
    child = subprocess.Popen(["true"])
    child.wait()
    return state(ws, pid=child.pid)


STATE = (
    Case("empty", "state", raw(b""), "state error: empty input"),
    Case("not-json", "state", raw(b"pid=1"), "state error: invalid JSON: Expecting value"),
    Case("array", "state", raw(b"[]"), "state error: <root>: [] is not of type 'object'"),
    Case("not-utf8", "state", raw(b'{"id": "\xff"}'), "state error: not UTF-8 at byte 8"),
    Case("over-a-megabyte", "state", lambda ws: b" " * (2 << 20),
         "state error: input larger than 1048576 bytes"),
    Case("nested-100k", "state", raw(b"[" * 100_000 + b"]" * 100_000),
         "state error: nested too deeply"),
    Case("duplicate-pid", "state",
         lambda ws: state(ws).replace(b'"pid": 1', b'"pid": 1, "pid": 2'),
         "state error: duplicate key 'pid'"),
    Case("bundle-missing", "state", lambda ws: state(ws, bundle=None),
         "'bundle' is a required property"),
    Case("bundle-relative", "state", lambda ws: state(ws, bundle="rel/bundle"),
         "bundle: 'rel/bundle' does not match"),
    Case("bundle-with-nul", "state", lambda ws: state(ws, bundle="/tmp/a\x00b"),
         "bundle: '/tmp/a\\x00b' does not match"),
    Case("bundle-nonexistent", "state", lambda ws: state(ws, bundle="/nonexistent/bundle"),
         "config.json error: /nonexistent/bundle/config.json: No such file or directory"),
    Case("bundle-is-host-root", "state", lambda ws: state(ws, bundle="/"),
         "config.json error: /config.json: No such file or directory"),
    Case("bundle-of-another-container", "state", another_gpu_bundle,
         "state error: pid {pid}: shares the hook's mount namespace"),
    Case("pid-negative", "state", lambda ws: state(ws, pid=-5),
         "state error: pid: -5 is less than the minimum of 1"),
    Case("pid-zero", "state", lambda ws: state(ws, pid=0),
         "state error: pid: 0 is less than the minimum of 1"),
    Case("pid-huge", "state", lambda ws: state(ws, pid=1 << 40),
         "state error: pid: 1099511627776 is greater than the maximum of 4194304"),
    Case("pid-string", "state", lambda ws: state(ws, pid="42"),
         "state error: pid: '42' is not of type 'integer'"),
    Case("pid-fraction", "state", lambda ws: state(ws, pid=1.5),
         "state error: pid: 1.5 is not of type 'integer'"),
    Case("pid-nan", "state", lambda ws: state(ws).replace(b'"pid": 1', b'"pid": NaN'),
         "state error: NaN is not a JSON number"),
    Case("pid-missing", "state", lambda ws: state(ws, pid=None),
         "state error: pid: missing"),
    Case("pid-of-host-init", "state", lambda ws: state(ws, pid=1),
         "state error: pid 1: "),  # shares our namespace, or (here, in a container) unreadable
    Case("pid-of-exited-process", "state", exited_pid, "state error: pid {pid}: no such process"),
    Case("status-unknown", "state", lambda ws: state(ws, status="flying"),
         "state error: status: 'flying' is not one of"),
    Case("id-empty", "state", lambda ws: state(ws, id=""), "state error: id: ''"),
    Case("oci-version-number", "state", lambda ws: state(ws, ociVersion=1),
         "state error: ociVersion: 1 is not of type 'string'"),
    Case("annotation-not-string", "state", lambda ws: state(ws, annotations={"a": 1}),
         "state error: annotations.a: 1 is not of type 'string'"),
)


def yaml_text(text: str) -> Build:
    """A config.yaml of raw ``text`` after a runtimes line naming the stub runtime."""
    def build(ws: Workspace) -> bytes:
        runtime = yaml.safe_load(ws.config.read_text())["runtimes"]
        return (f"runtimes: {json.dumps(runtime)}\n"
                + text.format(marker=ws.marker)).encode()
    return build


def yaml_with(path: str, value: Any) -> Build:
    """The workspace's valid configuration with a dotted ``path`` set to ``value``."""
    def build(ws: Workspace) -> bytes:
        document = copy.deepcopy(yaml.safe_load(ws.config.read_text()))
        setter(path, value)(document)
        return yaml.safe_dump(document).encode()
    return build


CONFIG_YAML = (
    Case("python-object-apply", "config.yaml",
         yaml_text("hook: !!python/object/apply:os.system ['touch {marker}']\n"),
         "could not determine a constructor for the tag "
         "'tag:yaml.org,2002:python/object/apply:os.system'"),
    Case("python-name", "config.yaml", yaml_text("log: !!python/name:os.system\n"),
         "'tag:yaml.org,2002:python/name:os.system'"),
    Case("python-object-new", "config.yaml",
         yaml_text("log: !!python/object/new:subprocess.Popen [['true']]\n"),
         "'tag:yaml.org,2002:python/object/new:subprocess.Popen'"),
    Case("python-module", "config.yaml", yaml_text("log: !!python/module:os\n"),
         "'tag:yaml.org,2002:python/module:os'"),
    Case("syntax-error", "config.yaml", yaml_text("hook:\n  path: [\n"),
         "line 4 column 1: expected the node content"),
    Case("root-is-list", "config.yaml", raw(b"- runc\n- crun\n"),
         "<root>: expected a mapping, got list"),
    Case("not-utf8", "config.yaml", raw(b"log: {file: \xff}\n"), "not UTF-8: invalid start byte"),
    Case("runtimes-not-list", "config.yaml", yaml_with("runtimes", "runc"),
         "runtimes: 'runc' is not of type 'array'"),
    Case("runtime-not-string", "config.yaml", yaml_with("runtimes", [7]),
         "runtimes.0: 7 is not of type 'string'"),
    Case("timeout-not-integer", "config.yaml", yaml_with("hook.timeout", "thirty"),
         "hook.timeout: 'thirty' is not of type 'integer'"),
    Case("timeout-negative", "config.yaml", yaml_with("hook.timeout", -1),
         "hook.timeout: -1 is less than the minimum of 1"),
    Case("attempts-fraction", "config.yaml", yaml_with("retry.attempts", 1.5),
         "retry.attempts: 1.5 is not of type 'integer'"),
    Case("policy-value-wrong-type", "config.yaml",
         yaml_with("policies.guaranteed", {"oom_score_adj": "low"}),
         "policies.guaranteed.oom_score_adj: 'low' is not of type 'integer'"),
    Case("unknown-top-level-key", "config.yaml", yaml_with("runtime", ["runc"]),
         "runtime: unknown key"),
    Case("unknown-nested-key", "config.yaml", yaml_with("hook.paht", "/x"),
         "hook.paht: unknown key"),
    Case("ldconfig-inside-the-image", "config.yaml",
         yaml_with("libnvidia_container.ldconfig", "/sbin/ldconfig"),
         "libnvidia_container.ldconfig: '/sbin/ldconfig' does not match '^@/'"),
)

CASES = CONFIG_JSON + STATE + CONFIG_YAML


def snapshot(path: Path) -> tuple[str, bytes]:
    """What is at ``path``: a regular file's bytes, or the kind of anything else."""
    if path.is_symlink():
        return "symlink", os.readlink(path).encode()
    if not path.exists():
        return "absent", b""
    if not path.is_file():
        return oct(path.stat().st_mode), b""
    return "file", path.read_bytes()


def feed(case: Case, ws: Workspace) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Put the case's input in place and run the command it is for; returns what was fed."""
    data = case.build(ws)
    if case.target == "config.json":
        if data is not None:
            ws.config_json.write_bytes(data)
        return ws.shim(), data or b""
    assert data is not None
    if case.target == "state":
        return ws.hook(data), data
    config = ws.tmp / "bad-config.yaml"
    config.write_bytes(data)
    return ws.shim(config), data


def expected(case: Case, fed: bytes) -> str:
    """The case's text, with ``{pid}`` the pid the state named."""
    if "{pid}" not in case.expect:
        return case.expect
    return case.expect.format(pid=json.loads(fed)["pid"])


@pytest.mark.parametrize("case", CASES, ids=[f"{c.target}-{c.id}" for c in CASES])
def test_bad_input_fails_in_one_line_leaving_config_json(workspace: Workspace,
                                                         case: Case) -> None:
    """Non-zero exit, one stderr line from our command naming what is wrong, config.json
    byte-identical to what the case left there, and the low-level runtime never reached."""
    if case.target == "config.json":
        data = case.build(workspace)
        if data is not None:
            workspace.config_json.write_bytes(data)
        given = snapshot(workspace.config_json)
        result, fed = workspace.shim(), data or b""
    else:
        given = snapshot(workspace.config_json)
        result, fed = feed(case, workspace)
    stderr = result.stderr.decode("utf-8", "replace")
    command = "gpu-container-hook: " if case.target == "state" else "gpu-container-runtime: "
    assert result.returncode != 0
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert stderr.startswith(command), stderr
    assert expected(case, fed) in stderr, stderr
    assert snapshot(workspace.config_json) == given
    assert not workspace.marker.exists()
