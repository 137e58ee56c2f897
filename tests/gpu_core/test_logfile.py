"""Our log file (gpu_core/logfile.py): escaping, parsing back, and never writing through anything
planted where the log lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_core import logfile

NOBODY = 65534


@pytest.mark.parametrize("separator", ["\n", "\r", "\v", "\f", "\x85", "\u2028", "\u2029",
                                       "\x00", "\x1b", "\x7f", "\x9b", "\u202e"])
def test_separators_and_controls_are_escaped(separator: str) -> None:
    """A value cannot end our line or smuggle a control character into it."""
    line = logfmt_line(f"c1{separator}time=x level=error forged=yes")
    assert len(line.splitlines()) == 1 and separator not in line
    assert logfile.parse_line(line)[0] == ("id", f"c1{separator}time=x level=error forged=yes")


def logfmt_line(value: str) -> str:
    return logfile.logfmt([("id", value), ("gpu", "no")])


def test_plain_values_stay_bare() -> None:
    assert logfile.logfmt([("id", "c1"), ("bundle", "/b/x-1")]) == "id=c1 bundle=/b/x-1"


def test_non_ascii_letters_are_kept_readable() -> None:
    assert logfile.quote("caf\u00e9") == '"caf\u00e9"'


@pytest.mark.parametrize("line", ["k", "=v", "k=v x", 'k="open', 'k="a"b', "k=a\"", "a b=c"])
def test_parse_line_refuses_what_logfmt_never_writes(line: str) -> None:
    with pytest.raises(ValueError):
        logfile.parse_line(line)


def test_parse_line_reads_bare_quoted_and_empty_values() -> None:
    assert logfile.parse_line('a=1 b="x y" c= d=""\n') == [("a", "1"), ("b", "x y"), ("c", ""),
                                                           ("d", "")]


def test_line_is_appended_to_a_new_file_with_mode_0640(tmp_path: Path) -> None:
    log = tmp_path / "var" / "log" / "shim.log"
    old = os.umask(0o000)
    try:
        logfile.append(str(log), "a=1")
    finally:
        os.umask(old)
    assert log.read_text() == "a=1\n"
    assert log.stat().st_mode & 0o777 == 0o640
    assert log.parent.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("umask", [0o077, 0o277])
def test_modes_are_exact_with_a_strict_umask(tmp_path: Path, umask: int) -> None:
    log = tmp_path / "log" / "shim.log"
    old = os.umask(umask)
    try:
        logfile.append(str(log), "a=1")
    finally:
        os.umask(old)
    assert log.stat().st_mode & 0o777 == 0o640
    assert log.parent.stat().st_mode & 0o777 == 0o755


def test_symlink_at_the_log_file_is_never_followed(tmp_path: Path) -> None:
    """A symlink planted at the log is moved aside; the canary it points at is untouched and
    the line lands in a fresh file of ours, after a note of what was moved."""
    canary = tmp_path / "canary"
    canary.write_text("canary\n")
    log = tmp_path / "shim.log"
    log.symlink_to(canary)
    logfile.append(str(log), "a=1")
    assert canary.read_text() == "canary\n"
    assert not log.is_symlink()
    lines = log.read_text().splitlines()
    assert "event=untrusted-state" in lines[0] and lines[-1] == "a=1"


def test_dangling_symlink_at_the_log_file_creates_nothing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "cron.d" / "evil"
    target.parent.mkdir(parents=True)
    log = tmp_path / "shim.log"
    log.symlink_to(target)
    logfile.append(str(log), "a=1")
    assert not target.exists()


def test_hard_link_at_the_log_file_is_not_appended_to(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("canary\n")
    canary.chmod(0o600)
    log = tmp_path / "shim.log"
    os.link(canary, log)
    logfile.append(str(log), "a=1")
    assert canary.read_text() == "canary\n"
    assert log.read_text().endswith("a=1\n")


def test_log_file_owned_by_someone_else_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "shim.log"
    log.write_text("theirs\n")
    os.chown(log, NOBODY, NOBODY)
    logfile.append(str(log), "a=1")
    assert log.stat().st_uid == os.geteuid() and "theirs" not in log.read_text()


def test_fifo_at_the_log_file_does_not_hang(tmp_path: Path) -> None:
    log = tmp_path / "shim.log"
    os.mkfifo(log)
    logfile.append(str(log), "a=1")
    assert log.read_text().endswith("a=1\n")


@pytest.mark.parametrize("setup", ["loose", "foreign", "symlink"])
def test_log_directory_others_control_gets_nothing(tmp_path: Path, setup: str) -> None:
    """The directory holding the log is ours to trust only when nobody else can swap what is
    in it (gpu_core/private_dirs.py): otherwise nothing is written there."""
    directory = tmp_path / "log"
    canary = tmp_path / "canary"
    canary.mkdir()
    if setup == "symlink":
        outer = tmp_path / "outer"
        outer.mkdir()
        outer.chmod(0o777)
        directory = outer / "log"
        directory.symlink_to(canary)
        os.lchown(directory, NOBODY, NOBODY)
    else:
        directory.mkdir()
        directory.chmod(0o777) if setup == "loose" else os.chown(directory, NOBODY, NOBODY)
    logfile.append(str(directory / "shim.log"), "a=1")
    assert list(canary.iterdir()) == []
    assert not (directory / "shim.log").exists()


def test_engine_log_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    """runc's --log is the engine's file (it may be a FIFO it reads), but a symlink there is
    still not followed."""
    canary = tmp_path / "canary"
    canary.write_text("canary\n")
    log = tmp_path / "log.json"
    log.symlink_to(canary)
    logfile.append(str(log), "a=1", engine_file=True)
    assert canary.read_text() == "canary\n"
