"""The launcher's fast create: a container no modifier would touch goes to runc without Python,
and only such a container (the trigger filter is checked against the pipeline itself)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oci_schema import config_errors

from gpu_core import config as config_mod
from gpu_core import logfile
from runtime_shim import cdi_injection, fastpath, launcher, pipeline, policy_choice, rootfs_guard
from runtime_shim.main import build_context

PRINT_ARGS = "for a do printf ' [%s]' \"$a\"; done; echo\n"


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def base_spec() -> dict[str, Any]:
    """A spec as containerd writes it, with nothing any modifier acts on."""
    return {"ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                        "cwd": "/", "capabilities": {"bounding": ["CAP_KILL"]}},
            "root": {"path": "rootfs", "readonly": True}, "hostname": "c",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}


class Launcher:
    """A rendered launcher with a fake Python and a fake runc, a current fast-path entry, and a
    bundle directory to fill."""

    def __init__(self, root: Path, config_text: str = "") -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        script(self.bin / "runc", "printf RUNTIME; " + PRINT_ARGS)
        python = script(root / "python", "shift 4; printf PYTHON; " + PRINT_ARGS)
        self.state = root / "state"
        self.path = root / "launcher"
        self.path.write_text(launcher.render_runtime(str(python), ["/nowhere"], str(self.state)))
        self.path.chmod(0o755)
        self.log = root / "shim.log"
        os.close(logfile.open_log(str(self.log))[0])  # as the first create through Python does
        self.config = root / "config.yaml"
        self.config.write_text(f"runtimes: [runc]\nlog: {{file: {self.log}}}\n" + config_text)
        self.bundle = root / "bundle"
        (self.bundle / "rootfs" / "dev").mkdir(parents=True)
        env = self.environ()
        loaded = config_mod.load(env, cache_dir=str(root / "cache"))
        assert fastpath.remember(loaded, env, state_dir=str(self.state),
                                 cache_dir=str(root / "cache"))

    def environ(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "GPU_CONTAINER_SHIM_CONFIG": str(self.config)}

    def write(self, spec: Any, indent: Any = None) -> None:
        (self.bundle / "config.json").write_text(
            spec if isinstance(spec, str) else json.dumps(spec, indent=indent))

    def run(self, argv: Sequence[str]) -> str:
        done = subprocess.run([str(self.path), *argv], capture_output=True, text=True,
                              env=self.environ(), check=False, cwd=self.root)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create(self) -> str:
        """'fast' when runc ran directly, 'python' when the launcher started Python."""
        out = self.run(["--root", "/r", "create", "--bundle", str(self.bundle), "c1"])
        return {"RUNTIME": "fast", "PYTHON": "python"}[out.split(" ", 1)[0]]


@pytest.fixture
def fast(tmp_path: Path) -> Launcher:
    return Launcher(tmp_path)


def test_untouched_create_runs_runc_directly_and_logs_a_line(fast: Launcher) -> None:
    """A plain spec goes straight to runc with argv unchanged, and our log gets its line."""
    fast.write(base_spec())
    out = fast.run(["--root", "/r", "create", "--bundle", str(fast.bundle), "c1"])
    assert out == f"RUNTIME [--root] [/r] [create] [--bundle] [{fast.bundle}] [c1]\n"
    line = fast.log.read_text().strip()
    assert line.startswith("time=") and line.endswith(
        f"level=info cmd=create id=c1 bundle={fast.bundle} gpu=no written=no changes=none "
        "path=fast")


def test_pass_through_uses_a_trusted_entry(fast: Launcher) -> None:
    assert fast.run(["state", "c1"]).startswith("RUNTIME")


@pytest.mark.parametrize("loosen", ["0777", "0770", "0702", "foreign", "parent-0777",
                                    "parent-foreign", "unsealed", "symlink"])
def test_entry_in_a_directory_others_control_is_not_trusted(fast: Launcher, loosen: str) -> None:
    """The launcher checks owner and mode of the entry's directory and its parent (the sticky
    seal Python set, which a numeric chmod clears, else find -perm): one someone else made or
    can write, or one whose mode was set since Python checked it, is not trusted: Python
    decides."""
    if loosen == "foreign":
        os.chown(fast.state, 65534, 65534)
    elif loosen.startswith("parent-"):
        os.chown(fast.root, 65534, 65534) if loosen == "parent-foreign" else \
            fast.root.chmod(int(loosen[7:], 8))
    elif loosen == "unsealed":
        fast.state.chmod(0o700)
    elif loosen == "symlink":
        fast.state.rename(fast.root / "real-state")
        fast.state.symlink_to(fast.root / "real-state")
    else:
        fast.state.chmod(int(loosen, 8))
    assert fast.run(["state", "c1"]).startswith("PYTHON")


def test_missing_log_file_is_left_to_python(fast: Launcher) -> None:
    """The launcher appends only to a log file that exists; Python makes one safely."""
    fast.log.unlink()
    fast.write(base_spec())
    assert fast.create() == "python"


@pytest.mark.parametrize("plant", ["symlink", "foreign", "loose", "hardlink", "fifo"])
def test_log_file_someone_could_have_planted_is_left_to_python(fast: Launcher,
                                                               plant: str) -> None:
    """A symlink, hard link or FIFO at the log, or a log someone else owns or can write, is
    never appended to by the launcher: Python moves it aside (gpu_core/logfile.open_log)."""
    canary = fast.root / "canary"
    canary.write_text("canary\n")
    canary.chmod(0o600)
    fast.log.unlink()
    if plant == "symlink":
        fast.log.symlink_to(canary)
    elif plant == "hardlink":
        os.link(canary, fast.log)
    elif plant == "fifo":
        os.mkfifo(fast.log)
    else:
        fast.log.write_text("")
        fast.log.chmod(0o666) if plant == "loose" else os.chown(fast.log, 65534, 65534)
    fast.write(base_spec())
    assert fast.create() == "python"
    assert canary.read_text() == "canary\n"


@pytest.mark.parametrize("setup", ["loose", "foreign"])
def test_log_in_a_directory_others_control_is_left_to_python(tmp_path: Path, setup: str) -> None:
    fast = Launcher(tmp_path)
    directory = tmp_path / "logs"
    directory.mkdir()
    log = directory / "shim.log"
    log.write_text("")
    log.chmod(0o640)
    directory.chmod(0o777) if setup == "loose" else os.chown(directory, 65534, 65534)
    fast.config.write_text(f"runtimes: [runc]\nlog: {{file: {log}}}\n")
    env = fast.environ()
    loaded = config_mod.load(env, cache_dir=str(tmp_path / "cache"))
    assert fastpath.remember(loaded, env, state_dir=str(fast.state),
                             cache_dir=str(tmp_path / "cache"))
    fast.write(base_spec())
    assert fast.create() == "python"


@pytest.mark.parametrize("container_id", ["c1\ntime=x level=error", "c1\rx", "c1\x0bx",
                                          "c1\x0cx", "c1\u0085x", "c1\u2028x", "c1\u2029x",
                                          "c1\x1bx", "c1 x", "c1\u00e9", "c1\"x"])
def test_id_that_needs_escaping_is_logged_by_python(fast: Launcher, container_id: str) -> None:
    """The launcher writes only bare logfmt values; any id that would need escaping (argv is
    the engine's) goes to Python, whose formatter escapes it."""
    fast.write(base_spec())
    out = fast.run(["create", "--bundle", str(fast.bundle), container_id])
    assert out.startswith("PYTHON")
    assert fast.log.read_text() == ""


def test_pretty_printed_spec_is_read_too(fast: Launcher) -> None:
    """A multi-line config.json (as runc spec writes it) takes the fast path as well."""
    fast.write(base_spec(), indent="\t")
    assert fast.create() == "fast"


def test_bundle_from_the_working_directory(fast: Launcher) -> None:
    """Without --bundle the bundle is the working directory, as for the Python shim."""
    fast.write(base_spec())
    done = subprocess.run([str(fast.path), "run", "c1"], capture_output=True, text=True,
                          env=fast.environ(), check=True, cwd=fast.bundle)
    assert done.stdout.startswith("RUNTIME")
    assert f"bundle={fast.bundle} " in fast.log.read_text()


def with_env(*entries: str) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec["process"]["env"].extend(entries)


def set_path(path: Sequence[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return change


SLOW = [
    ("gpu request", with_env("NVIDIA_VISIBLE_DEVICES=0")),
    ("gpu request in lower case", with_env("nvidia_visible_devices=0")),
    ("void request", with_env("NVIDIA_VISIBLE_DEVICES=void")),
    ("legacy cuda image", with_env("CUDA_VERSION=12.2")),
    ("device list mount", lambda s: s["mounts"].append(
        {"destination": "/var/run/nvidia-container-devices/0", "source": "/dev/null"})),
    ("policy annotation", set_path(["annotations", policy_choice.ANNOTATION], "guaranteed")),
    ("policy env", with_env(policy_choice.ENV_VAR + "=burstable")),
    ("explicit oom score", set_path(["process", "oomScoreAdj"], 5)),
    ("oom score key in upper case", set_path(["process", "OOMSCOREADJ"], -800)),
    ("unicode escape", lambda s: s["process"]["env"].append("X=\u00e9")),
    ("second root key", set_path(["x-vendor", "root"], {"path": "elsewhere"})),
    ("root key in other case", lambda s: s.__setitem__("Root", s.pop("root"))),
    ("path not the first member", set_path(["root"], {"readonly": True, "path": "rootfs"})),
    ("path with an escape", set_path(["root", "path"], 'root"fs')),
]


@pytest.mark.parametrize(("description", "change"), SLOW, ids=[c[0] for c in SLOW])
def test_specs_a_modifier_may_touch_go_to_python(fast: Launcher, description: str,
                                                 change: Callable[[dict[str, Any]], None]) -> None:
    """A trigger anywhere in config.json, or a root.path that needs a JSON parser, means
    Python decides."""
    spec = base_spec()
    change(spec)
    (fast.bundle / "config.json").write_text(json.dumps(spec, ensure_ascii=True))
    assert fast.create() == "python"


def test_image_with_symlinked_dev_goes_to_python(fast: Launcher) -> None:
    """The /dev symlink check (rootfs_guard) is the shim's: such an image never reaches runc
    from the launcher."""
    fast.write(base_spec())
    (fast.bundle / "rootfs" / "dev").rmdir()
    (fast.bundle / "rootfs" / "dev").symlink_to("/tmp")
    assert fast.create() == "python"


def test_symlinked_config_json_goes_to_python(fast: Launcher, tmp_path: Path) -> None:
    """The shim refuses a symlinked config.json; the launcher leaves that to it."""
    (tmp_path / "real.json").write_text(json.dumps(base_spec()))
    (fast.bundle / "config.json").symlink_to(tmp_path / "real.json")
    assert fast.create() == "python"


def test_configured_cgroup_parent_sends_every_create_to_python(tmp_path: Path) -> None:
    """cgroup.parent applies to every container, so no create is untouched."""
    moved = Launcher(tmp_path, "cgroup: {parent: ai-workload.slice}\n")
    moved.write(base_spec())
    assert moved.create() == "python"


def test_id_needing_quotes_goes_to_python(fast: Launcher) -> None:
    """An id the log line would have to quote is left to Python's logger."""
    fast.write(base_spec())
    out = fast.run(["create", "--bundle", str(fast.bundle), "a b"])
    assert out.startswith("PYTHON")


def untouched(spec: dict[str, Any], config: config_mod.Config, bundle: Path) -> bool:
    """What the Python shim does to ``spec``: True when nothing changes and nothing fails."""
    ctx = build_context(spec, config, bundle=str(bundle), container_id="c1",
                        systemd_cgroup=False)
    rootfs_guard.check(spec, str(bundle))
    return not pipeline.run(spec, ctx).changed


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2000, 2000),
                      st.text(max_size=12))
KEYS = st.sampled_from(["env", "args", "annotations", "oomScoreAdj", "hooks", "mounts", "x",
                        "linux", "resources", "cgroupsPath", "root", "path", "NVIDIA_X"])


# runc refuses an entry without "=" (or with an empty name) when it starts the process, so a
# spec holding one is not one "runc accepts": only NAME=VALUE entries are generated.
ENV = st.one_of(
    st.builds("{}={}".format,
              st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=15),
              st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_=0123456789", max_size=15)),
    st.sampled_from(["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=void", "CUDA_VERSION=12.2",
                     "AI_SCHEDULING_POLICY=guaranteed", "NVIDIA_DRIVER_CAPABILITIES=all"]))
ANNOTATIONS = st.dictionaries(st.sampled_from(["ai.scheduling.policy", "io.kubernetes.pod",
                                               "x"]),
                              st.sampled_from(["guaranteed", "burstable", "v"]), max_size=2)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS, st.recursive(JSON_LEAF, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(KEYS, kids, max_size=3)), max_leaves=8),
    max_size=4), st.lists(ENV, max_size=4), ANNOTATIONS,
    st.one_of(st.none(), st.integers(-1000, 1000)))
def test_no_trigger_means_no_modifier_acts(extra: dict[str, Any], env: list[str],
                                           annotations: dict[str, str],
                                           oom: Any) -> None:
    """For any spec runc accepts (valid against the OCI schema) whose text holds no
    CREATE_TRIGGERS, under a configuration the entry marks create-fast, the pipeline changes
    nothing and raises nothing: the launcher's shortcut is exact. (A spec runc refuses is
    refused by runc on the fast path instead of by us.)"""
    spec = base_spec()
    spec.update({k: v for k, v in extra.items() if k not in ("root", "process", "annotations")})
    spec["process"]["env"] += env
    if annotations:
        spec["annotations"] = annotations
    if oom is not None:
        spec["process"]["oomScoreAdj"] = oom
    text = json.dumps(spec).lower()
    assume(not any(trigger in text for trigger in fastpath.CREATE_TRIGGERS))
    assume(not config_errors(spec))
    config = config_mod.parse("runtimes: [runc]\nlog: {file: ''}\n", "test")
    assert fastpath.create_fast(config)
    try:
        assert untouched(spec, config, Path("/nonexistent-bundle"))
    except Exception as error:  # a ShimError would also be a difference from runc
        raise AssertionError(f"pipeline acted on a trigger-free spec: {error}") from error


def test_triggers_cover_the_names_the_modifiers_read() -> None:
    """Each name the request parser and the policy chooser look for is a trigger."""
    for name in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VERSION", "/var/run/nvidia-container-devices",
                 policy_choice.ANNOTATION, policy_choice.ENV_VAR, "oomScoreAdj",
                 "/dev/nvidia0", "/dev/nvidiactl", "/usr/lib64/libnvidia-ml.so.1",
                 "/usr/lib64/libcuda.so.1", cdi_injection.CDI_ANNOTATION_PREFIX + "vendor.gpu"):
        assert any(t in name.lower() for t in fastpath.CREATE_TRIGGERS), name
    assert os.path.basename(launcher.TEMPLATE) == "launcher.sh"
