"""The shell launcher: it finds the command and the runtime exactly as the Python shim does,
takes the fast path only with a current entry, and otherwise starts Python."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_core import config as config_mod
from gpu_core.errors import ShimError
from runtime_shim import argv as argv_mod
from runtime_shim import fastpath, launcher, lowlevel
from runtime_shim import main as main_mod

HERE = Path(__file__).resolve().parent


def argv_table() -> list[tuple[str, list[str]]]:
    """The parser's own table (tests/runtime_shim/test_argv.py), so both read the same cases."""
    spec = importlib.util.spec_from_file_location("argv_table", HERE / "test_argv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [(case[0], list(case[1])) for case in module.CASES]


EXTRA = [
    ("create as a --root value with equals", ["--root=create", "state", "x"]),
    ("single-dash root takes a value", ["-root", "run", "state", "x"]),
    ("single-dash log-format takes a value", ["-log-format", "create", "kill", "x"]),
    ("short unknown flag takes no value", ["-r", "create", "x"]),
    ("value flag at the very end", ["--log"]),
    ("double dash at the end", ["--"]),
    ("double dash then a flag-like command", ["--", "--root", "run"]),
    ("lone dash is the command", ["-", "create"]),
    ("empty word is the command", ["", "create"]),
    ("boolean flag with a value", ["--systemd-cgroup=false", "run", "x"]),
    ("rootless with equals", ["--rootless=true", "create", "x"]),
    ("criu takes a value", ["--criu", "run", "state", "x"]),
    ("glob and spaces survive", ["state", "*", "a b", "$HOME", "'q'", "\\n"]),
    ("newline in an argument", ["kill", "x\ny", "KILL"]),
    ("exec probe", ["--root", "/run/containerd/runc/k8s.io", "exec", "--process", "/p", "id"]),
    ("uppercase is not create", ["CREATE", "x"]),
    ("version", ["--version"]),
    ("short version", ["-v"]),
    ("help flag", ["-h"]),
    ("help command", ["help"]),
    ("version after a global flag", ["--debug", "--version"]),
    ("version as a command operand", ["state", "--version"]),
    ("create with a prefix is not create", ["createx", "x"]),
]


@dataclass
class Env:
    """A rendered launcher with a fake Python and a fake runc, and a current fast-path entry."""

    root: Path
    launcher: Path
    config: Path
    state: Path
    cache: Path
    bin: Path

    def environ(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:/usr/bin:/bin",
                "GPU_CONTAINER_SHIM_CONFIG": str(self.config), **extra}

    def run(self, argv: Sequence[str], environ: Optional[dict[str, str]] = None,
            **kwargs: Any) -> str:
        done = subprocess.run([str(self.launcher), *argv], capture_output=True, text=True,
                              env=self.environ() if environ is None else environ, check=False,
                              **kwargs)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def remember(self, environ: Optional[dict[str, str]] = None) -> bool:
        env = self.environ() if environ is None else environ
        config = config_mod.load(env, cache_dir=str(self.cache))
        return fastpath.remember(config, env, state_dir=str(self.state),
                                 cache_dir=str(self.cache))


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def expected_runtime(path: Path, argv: Sequence[str]) -> str:
    return f"RUNTIME {path}" + "".join(f" [{a}]" for a in argv) + "\n"


def expected_python(argv: Sequence[str]) -> str:
    return "PYTHON" + "".join(f" [{a}]" for a in argv) + "\n"


PRINT_ARGS = "for a do printf ' [%s]' \"$a\"; done; echo\n"


@pytest.fixture
def env(tmp_path: Path) -> Env:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir / "runc", "printf 'RUNTIME %s' \"$0\"; " + PRINT_ARGS)
    # The fake interpreter drops "-I -S -c CODE" and prints what the shim would receive.
    python = script(tmp_path / "python", "shift 4; printf PYTHON; " + PRINT_ARGS)
    state = tmp_path / "state"
    path = tmp_path / "sh-launcher"
    path.write_text(launcher.render_runtime(str(python), ["/nowhere"], str(state)))
    path.chmod(0o755)
    config = tmp_path / "config.yaml"
    config.write_text(f"runtimes: [runc, crun]\nlog: {{file: ''}}\n"
                      f"mig: {{lease_dir: {tmp_path / 'leases'}}}\n")
    (tmp_path / "leases").mkdir()
    made = Env(root=tmp_path, launcher=path, config=config, state=state,
               cache=tmp_path / "cache", bin=bin_dir)
    assert made.remember()
    return made


CASES = [(d, a) for d, a in argv_table()] + EXTRA


@pytest.mark.parametrize(("description", "argv"), CASES, ids=[c[0] for c in CASES])
def test_launcher_picks_python_for_create_and_run(env: Env, description: str,
                                                  argv: list[str]) -> None:
    """Each argv of the parser's table the parser rewrites, or that asks for our version or
    help, goes to Python; the launcher execs the runtime itself only for argv the parser passes
    through (an argv it is not sure of may go to Python too, which then passes it through)."""
    got = env.run(argv)
    invocation = argv_mod.parse(argv)
    if invocation.rewrites or main_mod.about_request(invocation):
        assert got == expected_python(argv)
    else:
        assert got in (expected_runtime(env.bin / "runc", argv), expected_python(argv))


PASS_THROUGH = [
    ["state", "x"], ["--root", "/r", "state", "x"], ["--root=/r", "--log", "/l", "kill", "x", "9"],
    ["-root", "/r", "--systemd-cgroup", "--debug", "list"], ["delete", "--force", "x"],
    ["--", "state", "x"], ["exec", "--process", "/p", "x"],
]


@pytest.mark.parametrize("argv", PASS_THROUGH, ids=" ".join)
def test_common_pass_through_argv_stays_fast(env: Env, argv: list[str]) -> None:
    """The argv engines send every second never start Python."""
    assert env.run(argv) == expected_runtime(env.bin / "runc", argv)


TOKENS = ["create", "run", "--version", "-h", "help", "state", "kill", "--root", "-root",
          "--root=create", "--log", "-log", "--log-format", "--log-format=json", "--criu",
          "--rootless", "-b",
          "--bundle", "--bundle=create", "--", "-", "", "--debug", "--systemd-cgroup", "x y",
          "*", "a=b", "--weird=create", "-r", "-rootless", "--=x", "-=", "create=run"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(TOKENS),
                          st.text(alphabet="-=abcrt ex\n", max_size=6)), max_size=6))
def test_launcher_agrees_with_the_parser_on_any_argv(env: Env, argv: list[str]) -> None:
    """For any argv over runc's flag vocabulary, the launcher never execs the runtime itself
    where the parser rewrites or our version or help is asked for, and the runtime receives the
    arguments unchanged."""
    got = env.run(argv)
    invocation = argv_mod.parse(argv)
    if invocation.rewrites or main_mod.about_request(invocation):
        assert got == expected_python(argv)
    else:
        assert got in (expected_runtime(env.bin / "runc", argv), expected_python(argv))


def hold_lease(env: Env, cid: str) -> None:
    (env.root / "leases" / f"{cid}.json").write_text("{}")


DELETES = [
    ("plain", ["delete", "c1"]),
    ("force", ["delete", "--force", "c1"]),
    ("short force after the id", ["--root", "/r", "delete", "c1", "-f"]),
    ("after double dash", ["delete", "--", "c1"]),
    ("single-dash global", ["-root", "delete", "delete", "c1"]),
    ("single-dash force", ["delete", "-force", "c1"]),
    ("double-dash short force", ["delete", "--f", "c1"]),
    ("force with a value", ["delete", "--force=true", "c1"]),
]


@pytest.mark.parametrize(("description", "argv"), DELETES, ids=[d[0] for d in DELETES])
def test_delete_of_a_lease_holder_goes_to_python(env: Env, description: str,
                                                 argv: list[str]) -> None:
    """delete of a container with a MIG lease file needs Python (it releases the lease)."""
    hold_lease(env, "c1")
    assert argv_mod.parse(argv).container_id == "c1"
    assert env.run(argv) == expected_python(argv)


@pytest.mark.parametrize(("description", "argv"), DELETES, ids=[d[0] for d in DELETES])
def test_delete_of_other_containers_stays_fast(env: Env, description: str,
                                               argv: list[str]) -> None:
    """Another container's lease does not send this delete to Python."""
    hold_lease(env, "c2")
    assert env.run(argv) == expected_runtime(env.bin / "runc", argv)


@pytest.mark.parametrize("cid", ["..", ".", "a/b", ""])
def test_delete_ids_python_never_looks_up_stay_fast(env: Env, cid: str) -> None:
    """Ids delete_releasing ignores (empty, dot names, with a slash) are never looked up."""
    (env.root / "leases" / "a").mkdir()
    for name in ("...json", "..json", "a/b.json", ".json"):
        (env.root / "leases" / name).write_text("{}")
    assert env.run(["delete", cid]) == expected_runtime(env.bin / "runc", ["delete", cid])


class Exec(Exception):
    """The shim reached exec of the runtime."""


class Child(Exception):
    """The shim started the runtime as a child: it had more to do than exec."""


def python_does_more_than_exec(env: Env, argv: list[str]) -> bool:
    """Run the real shim in-process: False when it execs the runtime with argv unchanged
    straight away, True when it does anything else (a rewrite, a child runtime)."""
    from unittest import mock

    from runtime_shim import main as main_mod

    runtime = str(env.bin / "runc")
    calls: list[tuple[str, list[str]]] = []

    def fake_exec(path: str, args: list[str]) -> None:
        calls.append((path, list(args)))
        raise Exec

    def fake_call(*args: Any, **kwargs: Any) -> int:
        raise Child

    if argv_mod.parse(argv).rewrites:
        return True
    with mock.patch.dict(os.environ, env.environ(), clear=True), \
            mock.patch.object(os, "execv", fake_exec), \
            mock.patch("subprocess.call", fake_call), \
            mock.patch.object(fastpath, "STATE_DIR", str(env.root / "python-state")):
        try:
            if main_mod.main(argv) == 1:
                return True  # refused by the shim itself (an ambiguous argv)
        except Child:
            return True
        except Exec:
            assert calls == [(runtime, [runtime, *argv])]
            return False
    raise AssertionError("the shim neither exec'd nor started a child")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["delete", "c1", "c2", "-f", "--force", "--", "-", "-b",
                                 "--root", "state", "kill", "--bundle=x", "-root", "",
                                 "--f", "-force=0", "--force=yes", "-h"]),
                max_size=5))
def test_launcher_goes_to_python_whenever_the_shim_does_more_than_exec(
        env: Env, argv: list[str]) -> None:
    """Against the real shim: the launcher execs the runtime itself only when the Python shim
    would do nothing but exec it (c1 holds a MIG lease); an argv it is not sure of goes to
    Python."""
    hold_lease(env, "c1")
    got = env.run(argv)
    if python_does_more_than_exec(env, argv):
        assert got == expected_python(argv)
    else:
        assert got in (expected_runtime(env.bin / "runc", argv), expected_python(argv))


def test_changed_config_goes_to_python(env: Env) -> None:
    """A configuration whose bytes differ from the remembered ones is never trusted."""
    env.config.write_text("runtimes: [crun]\nlog: {file: ''}\n")
    assert env.run(["state", "x"]) == expected_python(["state", "x"])


def test_touched_but_identical_config_stays_fast(env: Env) -> None:
    """The check is on content, so rewriting the same bytes keeps the fast path."""
    env.config.write_bytes(env.config.read_bytes())
    assert env.run(["state", "x"]) == expected_runtime(env.bin / "runc", ["state", "x"])


def test_missing_entry_goes_to_python(env: Env) -> None:
    """Without an entry (first call after boot) the launcher starts Python."""
    (env.state / "named").unlink()
    assert env.run(["delete", "x"]) == expected_python(["delete", "x"])


def test_missing_copy_goes_to_python(env: Env) -> None:
    """An entry whose copy was removed by a concurrent writer is a miss, not an error."""
    for copy in env.state.glob("copy-*"):
        copy.unlink()
    assert env.run(["delete", "x"]) == expected_python(["delete", "x"])


@pytest.mark.parametrize("damage", ["magic", "truncated", "absent-for-named"])
def test_damaged_entry_goes_to_python(env: Env, damage: str) -> None:
    """An entry that is not exactly what the writer writes is ignored."""
    entry = env.state / "named"
    lines = entry.read_text().split("\n")
    if damage == "magic":
        lines[0] = "gpu-container-shim fastpath 0"
    elif damage == "truncated":
        lines = lines[:-2]
    else:
        lines[2] = fastpath.ABSENT
    entry.write_text("\n".join(lines))
    assert env.run(["state", "x"]) == expected_python(["state", "x"])


def test_named_config_missing_goes_to_python(env: Env) -> None:
    """A named file that disappeared is Python's error to report."""
    env.config.unlink()
    assert env.run(["state", "x"]) == expected_python(["state", "x"])


def test_default_slot_is_not_used_for_a_named_config(env: Env) -> None:
    """Without GPU_CONTAINER_SHIM_CONFIG the launcher reads the default slot only."""
    environ = env.environ()
    del environ["GPU_CONTAINER_SHIM_CONFIG"]
    assert env.run(["state", "x"], environ) == expected_python(["state", "x"])


def absent_entry(env: Env, default_path: Path, runtimes: Sequence[str] = ("runc",)) -> None:
    text = fastpath.entry_text(str(default_path), fastpath.ABSENT, "", runtimes)
    assert text is not None
    (env.state / "default").write_text(text)


def test_absent_default_config_uses_defaults_fast(env: Env) -> None:
    """No default file (and a real parent directory): the recorded defaults apply."""
    absent_entry(env, env.root / "etc" / "config.yaml")
    (env.root / "etc").mkdir()
    environ = {"PATH": env.environ()["PATH"]}
    assert env.run(["state", "x"], environ) == expected_runtime(env.bin / "runc", ["state", "x"])


@pytest.mark.parametrize("what", ["file", "dangling symlink", "parent is a file"])
def test_present_default_config_goes_to_python(env: Env, what: str) -> None:
    """Anything where open() would not fail with ENOENT sends the call to Python."""
    etc = env.root / "etc"
    default = etc / "config.yaml"
    absent_entry(env, default)
    if what == "parent is a file":
        etc.write_text("")
    else:
        etc.mkdir()
        if what == "file":
            default.write_text("runtimes: [crun]\n")
        else:
            default.symlink_to(env.root / "nowhere")
    environ = {"PATH": env.environ()["PATH"]}
    assert env.run(["state", "x"], environ) == expected_python(["state", "x"])


RESOLUTION = [
    # (description, runtimes, PATH entries relative to tmp ("" = empty entry), files)
    ("first on PATH wins", ["runc", "crun"], ["a", "b"], ["b/runc", "a/crun", "b/crun"]),
    ("later candidate when the first is missing", ["runc", "crun"], ["a"], ["a/crun"]),
    ("absolute candidate", ["@abs/rt", "runc"], ["a"], ["abs/rt", "a/runc"]),
    ("missing absolute falls through", ["@abs/none", "runc"], ["a"], ["a/runc"]),
    ("relative with a slash is skipped", ["a/runc", "crun"], ["a", "."], ["a/runc", "a/crun"]),
    ("empty PATH entries are skipped", ["runc"], ["", "a", ""], ["a/runc"]),
    ("trailing slash joins once", ["runc"], ["a/"], ["a/runc"]),
    ("not executable is skipped", ["runc"], ["a", "b"], ["a/runc:noexec", "b/runc"]),
    ("a directory is skipped", ["runc"], ["a", "b"], ["a/runc:dir", "b/runc"]),
    ("name with a space", ["my runc"], ["a"], ["a/my runc"]),
]


@pytest.mark.parametrize(("description", "runtimes", "path", "files"), RESOLUTION,
                         ids=[r[0] for r in RESOLUTION])
def test_launcher_finds_the_runtime_lowlevel_finds(env: Env, description: str,
                                                  runtimes: list[str], path: list[str],
                                                  files: list[str]) -> None:
    """The runtime the launcher execs is the one runtime_shim.lowlevel.find returns."""
    base = env.root / "r"
    for spec in files:
        name, _, kind = spec.partition(":")
        target = base / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            target.mkdir()
        else:
            script(target, "printf 'RUNTIME %s' \"$0\"; " + PRINT_ARGS)
            if kind == "noexec":
                target.chmod(0o644)
    names = [str(base) + r[1:] if r.startswith("@") else r for r in runtimes]
    search = ":".join(str(base / p) if p not in ("", ".") else p for p in path)
    if path[-1] == "a/":
        search += "/"
    env.config.write_text("runtimes: [" + ", ".join(f"'{n}'" for n in names) + "]\n")
    environ = {**env.environ(), "PATH": search}
    assert env.remember(environ)
    found = lowlevel.find(names, {"PATH": search})
    assert env.run(["state", "x"], environ, cwd=base) == expected_runtime(Path(found.path),
                                                                          ["state", "x"])


def test_no_runtime_found_goes_to_python(env: Env) -> None:
    """When nothing is found, Python reports the error with everything it tried."""
    with pytest.raises(ShimError):
        lowlevel.find(["runc", "crun"], {"PATH": "/nowhere"})
    environ = {**env.environ(), "PATH": "/nowhere"}
    assert env.run(["state", "x"], environ) == expected_python(["state", "x"])


def test_callers_file_descriptors_reach_the_runtime(env: Env) -> None:
    """fds 3 and up (runc --preserve-fds, exec's console) pass through untouched."""
    script(env.bin / "runc", "cat <&3; cat <&5\n")
    (env.root / "three").write_text("three\n")
    (env.root / "five").write_text("five\n")
    done = subprocess.run(
        ["/bin/sh", "-c", 'exec "$0" exec --preserve-fds 3 x true 3<"$1" 5<"$2"',
         str(env.launcher), str(env.root / "three"), str(env.root / "five")],
        capture_output=True, text=True, env=env.environ(), check=False)
    assert (done.returncode, done.stdout) == (0, "three\nfive\n"), done.stderr


def test_stdin_reaches_the_runtime(env: Env) -> None:
    """exec probes read stdin; the launcher never consumes it."""
    script(env.bin / "runc", "cat\n")
    assert env.run(["exec", "x", "cat"], input="probe\n") == "probe\n"


def test_rendered_launcher_runs_the_real_shim(tmp_path: Path) -> None:
    """With the real interpreter, a pass-through call without an entry runs the Python shim,
    which execs the configured runtime."""
    runtime = script(tmp_path / "rt", "echo ran \"$@\"\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"runtimes: [{runtime}]\nlog: {{file: ''}}\n")
    path = tmp_path / "gpu-container-runtime"
    launcher.install("runtime", str(path), sys.executable, state_dir=str(tmp_path / "state"))
    done = subprocess.run([str(path), "state", "x"], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "GPU_CONTAINER_SHIM_CONFIG": str(config)})
    assert (done.returncode, done.stdout) == (0, "ran state x\n"), done.stderr


def test_rendered_hook_starts_isolated_without_site(tmp_path: Path) -> None:
    """The hook launcher's #! line runs Python with -I -S and our import path."""
    path = tmp_path / "gpu-container-hook"
    launcher.install("hook", str(path), sys.executable)
    first = path.read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    done = subprocess.run([str(path), "bogus-stage"], capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/evil"})
    assert done.returncode != 0 and "usage" in done.stderr


def test_template_without_a_setting_is_refused() -> None:
    """Rendering fails loudly when the template lost one of the lines it sets."""
    with pytest.raises(ValueError, match="PYTHON"):
        launcher.set_line("STATE=x\n", "PYTHON", "/usr/bin/python3")


def installed_runtime(tmp_path: Path, config_text: str) -> tuple[Path, dict[str, str]]:
    """The real launcher with the real interpreter, a fake `runc` first on PATH and a config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir / "runc", "echo ran \"$@\"\n")
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    path = tmp_path / "gpu-container-runtime"
    launcher.install("runtime", str(path), sys.executable, state_dir=str(tmp_path / "state"))
    return path, {"PATH": f"{bin_dir}:/usr/bin:/bin", "GPU_CONTAINER_SHIM_CONFIG": str(config)}


@pytest.mark.parametrize("argv", [["state", "x"], ["kill", "x", "TERM"], ["delete", "x"]])
def test_bad_config_still_reaches_the_runtime_through_the_launcher(tmp_path: Path,
                                                                   argv: list[str]) -> None:
    """A config.yaml that does not validate: the launcher's call reaches the default runtime
    with a warning naming the problem."""
    path, environ = installed_runtime(tmp_path, "runtimes: [runc]\nbogus: 1\n")
    done = subprocess.run([str(path), *argv], capture_output=True, text=True, check=False,
                          env=environ)
    assert (done.returncode, done.stdout) == (0, "ran " + " ".join(argv) + "\n"), done.stderr
    assert done.stderr.startswith("gpu-container-runtime: warning: config: ")
    assert "bogus: unknown key" in done.stderr


def test_version_through_the_launcher_prints_ours_first(tmp_path: Path) -> None:
    """--version goes to Python even with a fast-path entry: ours, then the runtime's."""
    path, environ = installed_runtime(tmp_path, "runtimes: [runc]\nlog: {file: ''}\n")
    subprocess.run([str(path), "state", "x"], capture_output=True, check=True, env=environ)
    done = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True,
                          env=environ)
    assert done.stdout.splitlines()[0].startswith("gpu-container-runtime version ")
    assert done.stdout.splitlines()[1:] == ["ran --version"]
