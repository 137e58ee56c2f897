"""gpu_core.strict_json: JSON read as runc's parser reads it."""

from __future__ import annotations

import pytest

from gpu_core import strict_json


@pytest.mark.parametrize(("data", "message"), [
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"x": {"b": 1, "b": 1}}', "duplicate key 'b'"),
    (b'{"a": NaN}', "NaN is not a JSON number"),
    (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"a": 1e999}', "number 1e999 is out of range"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"a": ', "invalid JSON: Expecting value: line 1 column 7"),
    (b"\xff", "invalid JSON: "),
])
def test_refused_documents_name_the_reason(data: bytes, message: str) -> None:
    """Each document runc would reject or read differently is one StrictJsonError."""
    with pytest.raises(strict_json.StrictJsonError) as info:
        strict_json.loads(data)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_plain_documents_parse_as_json_does() -> None:
    """Accepted documents give exactly what json.loads gives, key order kept."""
    assert list(strict_json.loads(b'{"z": 1, "a": [1.5, "x", null]}').items()) == [
        ("z", 1), ("a", [1.5, "x", None])]
