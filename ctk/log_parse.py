"""Read back our logfmt lines (gpu_core/logfile.py writes them): ``key=value`` pairs, a value bare
or double-quoted with backslash escapes (``\\n``, ``\\"``, ``\\\\``, ``\\uXXXX`` …).

Tolerant on purpose: the log is read long after it was written, by a collector that must not
stop on one odd line. A word without ``=`` is skipped, an unterminated quote runs to the end of
the line, an unknown escape keeps its character; a repeated key keeps its last value.
``parse_line`` is the only entry point, so a parser kept next to the formatter can replace it.
"""

from __future__ import annotations

ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "0": "\0", "v": "\v",
           "a": "\a", "e": "\x1b", "\\": "\\", '"': '"', "/": "/"}


def _hex(text: str, start: int, width: int) -> int:
    """The code point of ``width`` hex digits at ``start``, or -1."""
    digits = text[start:start + width]
    if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return -1
    return int(digits, 16)


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The value of the quoted string opening at ``start`` and the index after it."""
    out: list[str] = []
    i, end = start + 1, len(text)
    while i < end:
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c != "\\" or i + 1 >= end:
            out.append(c)
            i += 1
            continue
        kind = text[i + 1]
        width = {"u": 4, "x": 2, "U": 8}.get(kind, 0)
        code = _hex(text, i + 2, width) if width else -1
        if code >= 0:
            i += 2 + width
            if 0xD800 <= code < 0xDC00 and text[i:i + 2] == "\\u":  # JSON's surrogate pair
                low = _hex(text, i + 2, 4)
                if 0xDC00 <= low < 0xE000:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            out.append(chr(code) if code <= 0x10FFFF else "\ufffd")
            continue
        out.append(ESCAPES.get(kind, kind))
        i += 2
    return "".join(out), end


def parse_line(line: str) -> dict[str, str]:
    """The fields of one logfmt line."""
    fields: dict[str, str] = {}
    i, end = 0, len(line)
    while i < end:
        if line[i] in " \t\r\n":
            i += 1
            continue
        start = i
        while i < end and line[i] not in "= \t\r\n":
            i += 1
        key = line[start:i]
        if i >= end or line[i] != "=":
            continue  # a bare word: nothing we write, skipped
        i += 1
        if i < end and line[i] == '"':
            value, i = _quoted(line, i)
        else:
            start = i
            while i < end and line[i] not in " \t\r\n":
                i += 1
            value = line[start:i]
        if key:
            fields[key] = value
    return fields
