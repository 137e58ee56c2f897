"""Where ``gpu-ctk metrics`` stopped reading our log, and reading on from there across rotation.

A ``Cursor`` is the log's device and inode, the offset after the last whole line read, and the
bytes just before that offset. Each run reads only what was appended since. When logrotate
moved the file away (a new inode, or the same one shorter than the offset: ``copytruncate``),
the rest of the old file is read from ``PATH.1`` when that file is the one we were reading — its
bytes before the offset are the ones remembered — and then the new file from its start; a line
is never read twice, and the only loss is a rotated file that was already compressed or removed
(reported, so it shows in ``gpu_container_shim_log_rotations_total{outcome="lost"}``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

TAIL = 64
"""Bytes before the offset remembered to recognise the file again."""
CHUNK = 64 << 20
"""Most bytes of the live log read in one run (a first run over a huge log catches up over a
few runs instead of holding it all in memory)."""


@dataclass(frozen=True)
class Cursor:
    dev: int = 0
    ino: int = 0
    offset: int = 0
    tail: bytes = b""

    def to_json(self) -> dict[str, Any]:
        return {"dev": self.dev, "ino": self.ino, "offset": self.offset, "tail": self.tail.hex()}

    @classmethod
    def from_json(cls, document: Any) -> Cursor:
        """Raises ValueError naming what is wrong."""
        if not isinstance(document, dict):
            raise ValueError("log: not an object")
        numbers: list[int] = []
        for key in ("dev", "ino", "offset"):
            value = document.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"log: {key} must be a non-negative integer")
            numbers.append(value)
        try:
            tail = bytes.fromhex(str(document.get("tail", "")))
        except ValueError:
            raise ValueError("log: tail is not hex") from None
        if len(tail) > TAIL or len(tail) > numbers[2]:
            raise ValueError("log: tail longer than the offset allows")
        return cls(numbers[0], numbers[1], numbers[2], tail)


@dataclass(frozen=True)
class Read:
    lines: list[str]
    cursor: Cursor
    rotation: str = ""
    """``followed`` or ``lost`` when the log was rotated since the last run, else empty."""


def _same_file(path: str, cursor: Cursor) -> bool:
    """Whether ``path`` is the file the cursor was in: its bytes before the offset are the
    remembered ones (and, with nothing read yet, it is the same inode)."""
    try:
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            stream.seek(cursor.offset - len(cursor.tail))
            same_bytes = stream.read(len(cursor.tail)) == cursor.tail
    except OSError:
        return False
    same_inode = (info.st_dev, info.st_ino) == (cursor.dev, cursor.ino)
    return same_bytes and info.st_size >= cursor.offset and (cursor.offset > 0 or same_inode)


def _read_from(path: str, offset: int, whole: bool) -> tuple[list[str], int, bytes, os.stat_result]:
    """Lines from ``offset``: only complete ones unless ``whole`` (a rotated file is final).
    Returns the lines, the offset after them, the bytes before that offset, the file's stat."""
    with open(path, "rb") as stream:
        info = os.fstat(stream.fileno())
        stream.seek(offset)
        data = stream.read() if whole else stream.read(CHUNK)
    end = len(data) if whole else data.rfind(b"\n") + 1
    if end == 0 and len(data) >= CHUNK:  # one line longer than a chunk: taken as it is
        end = len(data)
    chunk = data[:end]
    lines = [raw.decode("utf-8", "replace") for raw in chunk.splitlines()]
    new_offset = offset + end
    if end >= TAIL or offset == 0:
        tail = chunk[-TAIL:] if end else b""
    else:  # too little new text: the remembered bytes come partly from before ``offset``
        with open(path, "rb") as stream:
            stream.seek(max(0, new_offset - TAIL))
            tail = stream.read(new_offset - max(0, new_offset - TAIL))
    return lines, new_offset, tail, info


def read_new(path: str, cursor: Optional[Cursor]) -> Read:
    """The lines appended to the log at ``path`` since ``cursor`` (None: the whole file)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        current = None
    if cursor is not None and current is not None and (
            (current.st_dev, current.st_ino) == (cursor.dev, cursor.ino)
            and _same_file(path, cursor)):
        appended, offset, tail, info = _read_from(path, cursor.offset, whole=False)
        return Read(appended, Cursor(info.st_dev, info.st_ino, offset, tail))
    lines: list[str] = []
    rotation = ""
    if cursor is not None and cursor.ino:
        rotated = path + ".1"
        if _same_file(rotated, cursor):
            lines = _read_from(rotated, cursor.offset, whole=True)[0]
            rotation = "followed"
        else:
            rotation = "lost"
    if current is None:
        return Read(lines, Cursor(), rotation)
    fresh, offset, tail, info = _read_from(path, 0, whole=False)
    return Read(lines + fresh, Cursor(info.st_dev, info.st_ino, offset, tail), rotation)
