"""Our own log file: one greppable logfmt line per event, appended, never failing a start.

Shared by the shim (runtime_shim/main.py) and the hook; it lives here because the hook must not
import ``runtime_shim`` (README §Layout; tests/test_layers.py checks the arrows).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Sequence
from typing import Callable, Optional


def timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./:@+,")
"""Characters a value may hold and still be written bare (``id=c1``)."""

CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories escaped in a quoted value: C0/C1 controls and DEL, format characters
(bidi overrides, zero-width marks), lone surrogates, and the line and paragraph separators. A
value therefore never ends a line (``\n \r \v \f`` U+0085 U+2028 U+2029) nor hides text."""


def _escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # JSON spells an astral character as its UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def quoted(value: str) -> str:
    """``value`` as a JSON string that is one line of printable text: json.dumps escapes C0,
    ``"`` and ``\\``; every other control or separator character becomes ``\\uXXXX`` here."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isascii():
        return text.replace("\x7f", "\\u007f")
    import unicodedata  # only for non-ASCII values: one C module

    return "".join(_escape(c) if c == "\x7f" or unicodedata.category(c) in CONTROL_CATEGORIES
                   else c for c in text)


def quote(value: str) -> str:
    """logfmt quoting: bare when every character is in BARE, else ``quoted``."""
    if value and all(c in BARE for c in value):
        return value
    return quoted(value)


def logfmt(fields: Sequence[tuple[str, str]]) -> str:
    return " ".join(f"{key}={quote(value)}" for key, value in fields)


def parse_line(line: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of one line ``logfmt`` wrote, in order (the inverse of
    ``logfmt``, for readers of our log such as ``gpu-ctk`` reports); ValueError on anything
    else. Keys are non-empty runs of characters other than space, ``=`` and ``"``; a value is
    bare (BARE characters, possibly none) or a JSON string."""
    from json import decoder

    scanstring = decoder.scanstring  # type: ignore[attr-defined]  # public, but not in typeshed

    line = line[:-1] if line.endswith("\n") else line
    fields: list[tuple[str, str]] = []
    i, end = 0, len(line)
    while i < end:
        if line[i] == " ":
            i += 1
            continue
        equals = line.find("=", i)
        key = line[i:equals] if equals > i else ""
        if not key or " " in key or '"' in key:
            raise ValueError(f"column {i + 1}: expected key=value")
        i = equals + 1
        if line.startswith('"', i):
            try:
                value, i = scanstring(line, i + 1, True)
            except ValueError as exc:
                raise ValueError(f"column {i + 1}: {exc}") from None
        else:
            stop = line.find(" ", i)
            stop = end if stop < 0 else stop
            value = line[i:stop]
            if any(c not in BARE for c in value):
                raise ValueError(f"column {i + 1}: unquoted value with other characters")
            i = stop
        if i < end and line[i] != " ":
            raise ValueError(f"column {i + 1}: expected a space after the value of {key}")
        fields.append((key, value))
    return fields


LOG_MODE = 0o640
LOG_DIR_MODE = 0o755


def _file_problem(path: str, info: os.stat_result) -> Optional[str]:
    """Why the open log file is not one we may append to (None when it is)."""
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_uid != os.geteuid():
        return f"{path} is owned by uid {info.st_uid}"
    if info.st_nlink != 1:
        return f"{path} has {info.st_nlink} links"
    if info.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _create(path: str) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                 os.O_CLOEXEC, LOG_MODE)
    os.fchmod(fd, LOG_MODE)  # exactly, whatever the umask
    return fd


def open_log(path: str) -> tuple[int, list[str]]:
    """An fd appending to ``path`` and one note per thing moved aside on the way.

    Never through a symlink (O_NOFOLLOW), never into a FIFO or device (O_NONBLOCK, then the
    type), nor a file someone else owns, a hard link, or a file others could write: such a
    thing is renamed aside (the rename moves the link itself) and a fresh file is made
    exclusively. The directory must pass gpu_core.private_dirs' ancestor check, else UntrustedError.
    """
    from gpu_core import private_dirs

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        private_dirs.ensure(directory, LOG_DIR_MODE)
    problem = private_dirs.ancestor_problem(directory)
    if problem is not None:
        raise private_dirs.UntrustedError(problem)
    for _ in range(2):  # a second round when another writer created the file meanwhile
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                return _create(path), []
            continue
        except OSError as exc:  # ELOOP (a symlink), ENXIO (a FIFO), EISDIR ...
            problem = f"{path}: {exc.strerror or exc}"
        else:
            problem = _file_problem(path, os.fstat(fd))
            if problem is None:
                return fd, []
            os.close(fd)
        break
    else:
        raise FileExistsError(path)
    aside = f"{path}.untrusted-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    os.rename(path, aside)
    return _create(path), [f"{problem}: moved aside to {aside}"]


def _warning(note: str) -> str:
    return logfmt([("time", timestamp()), ("level", "warning"), ("event", "untrusted-state"),
                   ("note", note)])


def open_engine_log(path: str) -> int:
    """An fd appending to a log file the engine named (runc's ``--log``): it may be a FIFO the
    engine reads, so nothing is moved aside, but a symlink there is never followed."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   LOG_MODE)


def append(path: str, line: str, engine_file: bool = False) -> None:
    """Append one line to our log (or with ``engine_file``, to the engine's); a log we cannot
    write must never fail a container start."""
    if not path:
        return
    try:
        fd, moved = (open_engine_log(path), []) if engine_file else open_log(path)
        try:
            text = "".join(_warning(note) + "\n" for note in moved) + line + "\n"
            os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def note_untrusted(path: str, notes: Sequence[str]) -> None:
    """Log what gpu_core.private_dirs moved aside (README §Security and fault hardening)."""
    for note in notes:
        append(path, _warning(note))


class EventLog:
    """One logfmt line per event to the configured file (nothing when no file is configured),
    each with the time, the fields every line of this process carries, the event, and the
    milliseconds since ``start``."""

    def __init__(self, path: str, common: Sequence[tuple[str, str]], start: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.common = tuple(common)
        self.start = start
        self.clock = clock

    def event(self, event: str, level: str = "info", **fields: str) -> None:
        if not self.path:
            return
        elapsed = f"{(self.clock() - self.start) * 1000:.1f}"
        append(self.path, logfmt([("time", timestamp()), ("level", level), *self.common,
                                  ("event", event), *fields.items(), ("elapsed_ms", elapsed)]))
