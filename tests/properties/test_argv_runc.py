"""Property: for any argv over runc's create/run vocabulary, runtime_shim/argv.py names the
bundle real runc changes into, or no command exactly where runc refuses the argv.

Every bundle in the vocabulary is a directory that does not exist, so runc stops at its
``chdir`` and says which one; with no bundle it reads ``config.json`` in its working directory
(an empty one here), and a refused argv is a usage error before either.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_shim.argv import parse

NO_SPEC = "config.json not found"
"""runc's words for a working directory without config.json (its help text names the file)."""
GLOBALS = st.lists(st.sampled_from([["--debug"], ["--systemd-cgroup"], ["-systemd-cgroup=f"],
                                    ["--log-format", "json"], ["--bogus"], ["-v"]]),
                   max_size=2).map(lambda groups: [w for g in groups for w in g])
WORDS = st.lists(st.sampled_from([
    "-b", "--b", "-bundle", "--bundle", "-b=/nx-1", "--bundle=/nx-2", "/nx-3", "/nx-4",
    "--no-pivot", "--no-new-keyring", "-d", "--detach=false", "-d=yes", "--keep",
    "--pid-file", "--console-socket", "--preserve-fds", "2", "x", "--", "-", "id1", "id2",
    "--bogus", "-h", "",
]), max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(before=GLOBALS, command=st.sampled_from(["create", "run"]), words=WORDS)
def test_runc_changes_into_the_bundle_the_parser_names(tmp_path: Path, before: list[str],
                                                       command: str, words: list[str]) -> None:
    argv = [*before, command, *words]
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    done = subprocess.run(["runc", "--root", str(tmp_path / "state"), *argv],
                          capture_output=True, text=True, check=False, cwd=work, timeout=30)
    said = done.stdout + done.stderr
    invocation = parse(["--root", str(tmp_path / "state"), *argv])
    if invocation.ambiguous:
        return  # runc builds disagree: the shim refuses it itself (tests/runtime_shim/test_argv)
    if invocation.command is None:
        assert "chdir" not in said and NO_SPEC not in said, (argv, said)
    elif invocation.bundle:
        assert f"chdir {invocation.bundle}: no such file" in said, (argv, said)
    else:
        assert "chdir" not in said and NO_SPEC in said, (argv, said)
