"""runc argv parsing: command, bundle and id found exactly as runc would."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from runtime_shim.argv import parse

CASES = [
    # (description, argv, command, bundle, container id)
    ("plain create", ["create", "--bundle", "/b", "id1"], "create", "/b", "id1"),
    ("short bundle flag", ["create", "-b", "/b", "id1"], "create", "/b", "id1"),
    ("bundle with equals", ["run", "--bundle=/b", "id1"], "run", "/b", "id1"),
    ("single-dash long flag", ["create", "-bundle", "/b", "id1"], "create", "/b", "id1"),
    ("no bundle uses cwd later", ["create", "id1"], "create", None, "id1"),
    ("bundle named create", ["create", "--bundle", "create", "c"], "create", "create", "c"),
    ("bundle named create after id", ["run", "id", "-b", "create"], "run", "create", "id"),
    ("global flags with values", ["--root", "/r", "--log", "/l", "--log-format", "json",
                                  "create", "-b", "/b", "x"], "create", "/b", "x"),
    ("global root named create", ["--root", "create", "state", "x"], "state", None, None),
    ("global flag equals form", ["--root=/r", "--systemd-cgroup", "create", "x"],
     "create", None, "x"),
    ("unknown global flag: runc runs nothing", ["--weird", "delete", "x"], None, None, None),
    ("create options before id", ["create", "--console-socket", "/s", "--pid-file", "/p",
                                  "--no-pivot", "-b", "/b", "cid"], "create", "/b", "cid"),
    ("pass-through state", ["state", "abc"], "state", None, None),
    ("run after double dash", ["--", "run", "-b", "/b", "z"], "run", "/b", "z"),
    ("no command at all", ["--debug"], None, None, None),
    ("rootless takes a value", ["--rootless", "true", "run", "r"], "run", None, "r"),
    ("double-dash short bundle", ["create", "--b", "/b", "i"], "create", "/b", "i"),
    ("short bundle with equals", ["create", "-b=/b", "i"], "create", "/b", "i"),
    ("empty bundle with equals is the cwd", ["create", "-b=", "i"], "create", "", "i"),
    ("flags after the id are reordered", ["create", "i", "--bundle", "/b"], "create", "/b", "i"),
    ("a value flag takes a dash word", ["create", "--pid-file", "-b", "i"], "create", None, "i"),
    ("global value takes a dash word", ["--root", "--log", "create", "i"], "create", None, "i"),
    ("the last of a repeated bundle wins", ["run", "-b", "/a", "-b", "/c", "i"], "run", "/c",
     "i"),
    ("a boolean never takes the next word", ["run", "-d", "-b", "/b", "i"], "run", "/b", "i"),
    ("a bare boolean before the id", ["create", "--no-pivot", "i"], "create", None, "i"),
    ("boolean with a Go bool value", ["--systemd-cgroup=T", "run", "-d=false", "i"], "run",
     None, "i"),
    ("id after double dash", ["create", "-b", "/b", "--", "i"], "create", "/b", "i"),
    ("delete with short force after the id", ["delete", "i", "-f"], "delete", None, "i"),
    # runc refuses these argv and runs nothing, so the shim names no command either:
    ("Go stops at the id after a boolean", ["create", "--no-pivot", "i", "--bundle", "/b"],
     None, None, None),
    ("both names of one flag", ["create", "-b", "/a", "--bundle", "/c", "i"], None, None, None),
    ("a value flag swallowing the bundle flag", ["create", "--pid-file", "--bundle", "/b", "i"],
     None, None, None),
    ("two ids", ["run", "a", "b"], None, None, None),
    ("no id", ["create", "-b", "/b"], None, None, None),
    ("unknown command flag", ["create", "--bogus", "i"], None, None, None),
    ("bad flag syntax", ["create", "---b", "/b", "i"], None, None, None),
    ("boolean with a bad value", ["delete", "--force=yes", "i"], None, None, None),
    ("help runs nothing", ["create", "--help", "i"], None, None, None),
    ("global help runs nothing", ["-h", "create", "i"], None, None, None),
    ("bad preserve-fds", ["run", "--preserve-fds", "x", "i"], None, None, None),
    ("delete has no bundle flag", ["delete", "-b", "c2", "c1"], None, None, None),
]


@pytest.mark.parametrize(("description", "argv", "command", "bundle", "cid"), CASES,
                         ids=[c[0] for c in CASES])
def test_parse_finds_command_bundle_and_id(description: str, argv: list[str], command: str,
                                           bundle: str, cid: str) -> None:
    """Each runc command line yields the command, bundle and container id runc would use."""
    inv = parse(argv)
    assert (inv.command, inv.bundle, inv.container_id) == (command, bundle, cid)


AMBIGUOUS = [
    ["create", "i", "-b", "/b", "--"],  # 1.22.1 leaves "--" behind the id: two arguments
    ["create", "-d", "i", "-b"],  # 1.22.9 leaves the unknown -d behind -b, as its value
    ["run", "x", "--no-pivot", "--"],
]


@pytest.mark.parametrize("argv", AMBIGUOUS, ids=" ".join)
def test_argv_runc_builds_read_differently_is_ambiguous(argv: list[str]) -> None:
    """Where urfave/cli 1.22.1 and 1.22.9 disagree, the invocation is ambiguous: no rewrite,
    no lease release, the shim refuses it."""
    invocation = parse(argv)
    assert invocation.ambiguous and not invocation.rewrites
    assert (invocation.bundle, invocation.container_id) == (None, None)


def test_parse_keeps_argv_untouched() -> None:
    """The invocation keeps the exact arguments to hand on to runc."""
    argv = ["--log", "/l", "--unknown-flag", "create", "-b", "/b", "x"]
    assert parse(argv).args == tuple(argv)


def test_parse_reads_log_options() -> None:
    """--log and --log-format are recorded so our errors reach containerd."""
    inv = parse(["--log", "/var/log/x.log", "--log-format=json", "kill", "x"])
    assert (inv.log_path, inv.log_format) == ("/var/log/x.log", "json")


def test_parse_reads_systemd_cgroup_flag() -> None:
    """--systemd-cgroup switches the cgroup parent to slice form."""
    assert parse(["--systemd-cgroup", "create", "x"]).systemd_cgroup
    assert parse(["-systemd-cgroup=1", "create", "x"]).systemd_cgroup
    assert not parse(["--systemd-cgroup=false", "create", "x"]).systemd_cgroup
    assert not parse(["create", "x"]).systemd_cgroup


@pytest.mark.parametrize("command", ["state", "kill", "delete", "list", "exec", "start", "ps",
                                     "events", "pause", "resume", "update", "features"])
def test_only_create_and_run_are_rewritten(command: str) -> None:
    """Every command other than create and run takes the pass-through path."""
    assert not parse([command, "x"]).rewrites


RUNC_CASES = [
    ["create", "-b", "/nx-a", "i"], ["create", "i", "--bundle", "/nx-b"],
    ["create", "--no-pivot", "i", "--bundle", "/nx-c"], ["create", "-b", "/nx-d", "--bundle",
                                                          "/nx-e", "i"],
    ["create", "--pid-file", "--bundle", "/nx-f", "i"], ["create", "-b=/nx-g", "--", "i"],
    ["create", "-d", "-b", "/nx-h", "i"], ["run", "-d=false", "-b", "/nx-i", "i"],
    ["--systemd-cgroup=yes", "create", "-b", "/nx-j", "i"], ["run", "--b", "/nx-k", "i"],
    ["run", "-bundle=/nx-l", "-d", "i"], ["create", "-b", "/nx-m", "--preserve-fds", "0x1", "i"],
    ["create", "-b", "/nx-n", "--preserve-fds", "1.5", "i"], ["-debug=0", "run", "i", "-b",
                                                              "/nx-o"],
]


@pytest.mark.parametrize("argv", RUNC_CASES, ids=" ".join)
def test_real_runc_reads_the_bundle_the_parser_names_or_refuses(tmp_path: Path,
                                                                argv: list[str]) -> None:
    """runc itself: where the parser names a bundle, runc fails changing into exactly that
    (nonexistent) directory; where the parser names no command, runc refuses the argv."""
    done = subprocess.run(["runc", "--root", str(tmp_path), *argv], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    invocation = parse(argv)
    if invocation.ambiguous:
        return  # the shim refuses it itself, whatever this runc build does
    if invocation.command is None:
        assert "chdir" not in done.stderr, done.stderr
        assert re.search("requires exactly|flag|invalid", done.stderr), done.stderr
    else:
        assert f"chdir {invocation.bundle}: no such file" in done.stderr, done.stderr


@pytest.mark.parametrize(("argv", "about"), [
    (["--version"], "version"), (["-v"], "version"), (["--debug", "-h"], "help"),
    (["--version", "--help"], "help"), (["--root", "--version"], ""),
    (["--root", "create", "--root", "--version"], ""), (["--version=false"], ""),
    (["state", "--version"], ""),
])
def test_version_and_help_are_read_as_go_flags(argv: list[str], about: str) -> None:
    """--version/--help count only where Go's flag rules read them as the global flags (a value
    flag swallows the next word, even one spelled like a flag); help wins over version."""
    assert parse(argv).about == about
