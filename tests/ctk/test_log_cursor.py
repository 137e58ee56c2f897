"""Reading only what was appended, across logrotate's rename and copytruncate, never twice."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from ctk import log_cursor
from ctk.log_cursor import Cursor, read_new


def line(n: int) -> str:
    return f"time=2026-12-01T10:00:{n:02d}.000000Z level=info cmd=hook id=c{n} event=done\n"


def append(path: Path, *numbers: int) -> None:
    with path.open("a") as stream:
        stream.write("".join(line(n) for n in numbers))


def ids(lines: list[str]) -> list[int]:
    return [int(text.split(" id=c")[1].split()[0]) for text in lines]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "shim.log"


def test_first_read_takes_the_whole_file_then_only_what_was_appended(log: Path) -> None:
    append(log, 1, 2)
    first = read_new(str(log), None)
    append(log, 3)
    second = read_new(str(log), first.cursor)
    assert ids(first.lines) == [1, 2] and ids(second.lines) == [3]
    assert read_new(str(log), second.cursor).lines == []


def test_a_half_written_last_line_waits_for_its_end(log: Path) -> None:
    append(log, 1)
    with log.open("a") as stream:
        stream.write("time=x cmd=hook id=c2 ev")
    first = read_new(str(log), None)
    with log.open("a") as stream:
        stream.write("ent=done\n")
    assert ids(first.lines) == [1]
    assert read_new(str(log), first.cursor).lines == ["time=x cmd=hook id=c2 event=done"]


def test_rename_rotation_reads_the_rest_of_the_old_file_first(log: Path) -> None:
    """Lines written before logrotate moved the file are read from ``.1``, then the new file."""
    append(log, 1)
    first = read_new(str(log), None)
    append(log, 2)
    log.rename(str(log) + ".1")
    append(log, 3)
    second = read_new(str(log), first.cursor)
    assert ids(second.lines) == [2, 3] and second.rotation == "followed"
    third = read_new(str(log), second.cursor)
    assert third.lines == [] and third.rotation == ""


def test_copytruncate_rotation_is_followed_through_the_copy(log: Path) -> None:
    append(log, 1)
    first = read_new(str(log), None)
    append(log, 2)
    shutil.copyfile(log, str(log) + ".1")
    log.write_text("")
    append(log, 3)
    second = read_new(str(log), first.cursor)
    assert ids(second.lines) == [2, 3] and second.rotation == "followed"


def test_a_rotated_file_already_compressed_is_reported_lost(log: Path) -> None:
    """``.1`` is gone (compressed to ``.1.gz``): the new file is read whole, the gap reported."""
    append(log, 1)
    first = read_new(str(log), None)
    append(log, 2)
    with gzip.open(str(log) + ".1.gz", "wb") as packed:
        packed.write(log.read_bytes())
    log.unlink()
    append(log, 3)
    second = read_new(str(log), first.cursor)
    assert ids(second.lines) == [3] and second.rotation == "lost"


def test_an_older_rotation_at_dot_one_is_not_read_again(log: Path, tmp_path: Path) -> None:
    """A ``.1`` that is not the file we were reading (two rotations between runs) is lost,
    not double-counted."""
    append(log, 1)
    first = read_new(str(log), None)
    other = tmp_path / "other"
    append(other, 7, 8, 9)
    other.rename(str(log) + ".1")
    log.unlink()
    append(log, 3)
    second = read_new(str(log), first.cursor)
    assert ids(second.lines) == [3] and second.rotation == "lost"


def test_a_big_log_is_read_a_chunk_at_a_time_without_losing_lines(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run takes whole lines up to the chunk size; the next run goes on from there."""
    monkeypatch.setattr(log_cursor, "CHUNK", len(line(1)) * 2 + 5)
    append(log, 1, 2, 3, 4, 5)
    seen: list[int] = []
    cursor = None
    for _ in range(4):
        read = read_new(str(log), cursor)
        seen += ids(read.lines)
        cursor = read.cursor
    assert seen == [1, 2, 3, 4, 5]


def test_a_line_longer_than_a_chunk_does_not_stall_reading(
        log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_cursor, "CHUNK", 16)
    log.write_text("x" * 40 + "\n" + "k=v id=c1 e\n")
    cursor = None
    seen: list[str] = []
    for _ in range(6):
        read = read_new(str(log), cursor)
        seen += read.lines
        cursor = read.cursor
    assert "".join(seen[:-1]) == "x" * 40 and ids(seen[-1:]) == [1]


def test_a_missing_log_has_no_lines(log: Path) -> None:
    read = read_new(str(log), None)
    assert read.lines == [] and read.cursor == Cursor()


def test_cursor_round_trips_and_bad_ones_are_refused() -> None:
    cursor = Cursor(1, 2, 300, b"tail\n")
    assert Cursor.from_json(cursor.to_json()) == cursor
    for bad in ({"dev": -1, "ino": 0, "offset": 0}, {"dev": 0, "ino": True, "offset": 0},
                {"dev": 0, "ino": 0, "offset": 2, "tail": "zz"},
                {"dev": 0, "ino": 0, "offset": 1, "tail": "abcd"}, []):
        with pytest.raises(ValueError):
            Cursor.from_json(bad)
