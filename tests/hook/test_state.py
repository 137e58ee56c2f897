"""The OCI state read on the hook's stdin: bounded, duplicate-free, schema-checked."""

from __future__ import annotations

import io
import json
from typing import Any

import oci_schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_core.errors import ShimError
from hook import state as state_mod
from hook.state import State, load_state, parse_state, plainly_valid, problems

GOOD: dict[str, Any] = {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 4242,
        "bundle": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1",
        "annotations": {"io.kubernetes.cri.container-type": "container"}}


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


def with_(**changes: Any) -> dict[str, Any]:
    document = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def state_error(data: bytes, **kwargs: Any) -> ShimError:
    with pytest.raises(ShimError) as info:
        load_state(io.BytesIO(data), **kwargs)
    assert info.value.stage == "state"
    return info.value


def test_good_state_is_read() -> None:
    """A runc-style state becomes a State with every field carried over."""
    assert load_state(io.BytesIO(encoded(GOOD))) == State(
        oci_version="1.2.0", id="c1", status="creating", bundle=GOOD["bundle"], pid=4242,
        annotations={"io.kubernetes.cri.container-type": "container"})


def test_text_stream_is_read() -> None:
    """A text stream (sys.stdin) is read like a binary one."""
    assert load_state(io.StringIO(json.dumps(GOOD))).pid == 4242


def test_pid_may_be_absent() -> None:
    """A stopped container's state has no pid; the State says None."""
    state = load_state(io.BytesIO(encoded(with_(pid=None, status="stopped"))))
    assert state.pid is None


def test_annotations_default_to_empty() -> None:
    """A state without annotations has an empty mapping."""
    assert load_state(io.BytesIO(encoded(with_(annotations=None)))).annotations == {}


def test_unknown_fields_are_tolerated() -> None:
    """Runtimes may add fields; the hook does not fail on them."""
    assert load_state(io.BytesIO(encoded(with_(extra={"x": 1})))).id == "c1"


def test_integral_float_pid_becomes_an_int() -> None:
    """A pid written 42.0 is the integer 42, never a float handed to C."""
    state = load_state(io.BytesIO(b'{"ociVersion":"1","id":"c","status":"created",'
                                  b'"pid":42.0,"bundle":"/b"}'))
    assert state.pid == 42 and isinstance(state.pid, int)


INVALID = [
    # (description, document, expected cause)
    ("negative pid", with_(pid=-1), "pid: -1 is less than the minimum of 1"),
    ("zero pid", with_(pid=0), "pid: 0 is less than the minimum of 1"),
    ("string pid", with_(pid="42"), "pid: '42' is not of type 'integer'"),
    ("boolean pid", with_(pid=True), "pid: True is not of type 'integer'"),
    ("relative bundle", with_(bundle="bundle"), "bundle: 'bundle' does not match '^/[^\\\\x00]*$'"),
    ("unknown status", with_(status="paused"),
     "status: 'paused' is not one of ['creating', 'created', 'running', 'stopped']"),
    ("missing id", with_(id=None), "<root>: 'id' is a required property"),
    ("empty id", with_(id=""), "id: '' should be non-empty"),
    ("annotation not a string", with_(annotations={"a": 1}),
     "annotations.a: 1 is not of type 'string'"),
    ("not an object", [GOOD], "<root>: [{"),
]


@pytest.mark.parametrize(("description", "document", "cause"), INVALID,
                         ids=[c[0] for c in INVALID])
def test_invalid_state_names_the_field(description: str, document: Any, cause: str) -> None:
    """A state that breaks the schema is a `state: field: message` error."""
    assert state_error(encoded(document)).cause.startswith(cause)


def test_all_problems_are_listed() -> None:
    """Several problems are reported together, in field order."""
    cause = state_error(encoded(with_(pid=0, bundle="rel"))).cause
    assert cause.startswith("bundle: ") and "; pid: 0 is less than" in cause


def test_duplicate_key_is_an_error() -> None:
    """Two pid keys are refused rather than one silently winning."""
    data = b'{"ociVersion":"1","id":"c","status":"created","pid":1,"pid":2,"bundle":"/b"}'
    assert state_error(data).cause == "duplicate key 'pid'"


def test_duplicate_key_in_annotations_is_an_error() -> None:
    """Duplicate keys are refused at every depth."""
    data = (b'{"ociVersion":"1","id":"c","status":"created","bundle":"/b",'
            b'"annotations":{"a":"1","a":"2"}}')
    assert state_error(data).cause == "duplicate key 'a'"


def test_oversized_input_is_an_error() -> None:
    """Input beyond the limit is refused without being parsed."""
    data = encoded(with_(annotations={"pad": "x" * 2000}))
    assert state_error(data, limit=1000).cause == "input larger than 1000 bytes"


def test_input_at_the_limit_is_read() -> None:
    """The limit is inclusive."""
    data = encoded(GOOD)
    assert load_state(io.BytesIO(data), limit=len(data)).id == "c1"


def test_default_limit_is_one_mebibyte() -> None:
    """Without a limit argument, a state over 1 MiB is refused."""
    data = encoded(with_(annotations={"pad": "x" * (1 << 20)}))
    assert state_error(data).cause == f"input larger than {1 << 20} bytes"


MALFORMED = [
    ("empty", b"", "empty input; expected the container state JSON on stdin"),
    ("blank", b"  \n", "empty input; expected the container state JSON on stdin"),
    ("truncated", b'{"id": "c"', "invalid JSON: Expecting ',' delimiter: line 1 column 11"),
    ("trailing data", encoded(GOOD) + b"{}", "invalid JSON: Extra data: line 1 column"),
    ("NaN constant", b'{"pid": NaN}', "NaN is not a JSON number"),
    ("not utf-8", b'{"id": "\xff"}', "not UTF-8 at byte 8"),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
]


@pytest.mark.parametrize(("description", "data", "cause"), MALFORMED,
                         ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_a_state_error(description: str, data: bytes, cause: str) -> None:
    """Input that is not one JSON document is a one-line `state:` error."""
    exc = state_error(data)
    assert exc.cause.startswith(cause) and "\n" not in str(exc)


def test_problem_messages_are_bounded() -> None:
    """A huge bad value is not echoed in full."""
    cause = state_error(encoded(with_(status="x" * 100000))).cause
    assert cause.startswith("status: 'xxx") and len(cause) <= 300


def test_unreadable_stream_is_a_state_error() -> None:
    """A read failure is reported at stage `state`."""
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError("I/O error")

    with pytest.raises(ShimError) as info:
        load_state(io.BufferedReader(Broken()))
    assert str(info.value) == "state: cannot read: I/O error"


# --- conformance with the official OCI state schema -------------------------------------------

def official_validator() -> Any:
    """Draft-04 validator for the official OCI state schema (tests/support/oci_schema.py)."""
    return oci_schema.state_validator()


OFFICIAL_VALID = [
    GOOD,
    {"ociVersion": "1.0.2-dev", "id": "busybox", "status": "created", "pid": 1,
     "bundle": "/containers/busybox"},
    {"ociVersion": "1.2.1", "id": "stopped-one", "status": "stopped", "bundle": "/b",
     "annotations": {}},
    {"ociVersion": "1.1.0", "id": "r", "status": "running", "pid": 4194303,
     "bundle": "/var/lib/x", "annotations": {"org.opencontainers.image.os": "linux"}},
]


@pytest.mark.parametrize("document", OFFICIAL_VALID, ids=lambda d: d["id"])
def test_official_schema_accepts_the_example(document: dict[str, Any]) -> None:
    """Each example is valid OCI state (guards the examples themselves)."""
    assert list(official_validator().iter_errors(document)) == []


@pytest.mark.parametrize("document", OFFICIAL_VALID, ids=lambda d: d["id"])
def test_our_schema_accepts_official_example(document: dict[str, Any]) -> None:
    """What the OCI schema accepts for a real hook invocation, ours accepts too."""
    assert problems(document) == []


def test_official_schema_rejects_what_we_reject_for_status() -> None:
    """Our status enum is the OCI one: both refuse an unknown status."""
    document = with_(status="paused")
    assert list(official_validator().iter_errors(document)) and problems(document)


def test_official_schema_resolves_its_references() -> None:
    """The defs.json reference for annotations resolves: both schemas refuse a number there."""
    document = with_(annotations={"a": 1})
    assert list(official_validator().iter_errors(document)) and problems(document)


# --- properties -------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(list(GOOD)) | st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=200), JSON_VALUES.map(encoded)))
def test_parse_raises_only_state_errors(data: bytes) -> None:
    """Any bytes parse to a State or raise a one-line ShimError at stage `state`."""
    try:
        result = parse_state(data)
    except ShimError as exc:
        assert exc.stage == "state" and "\n" not in str(exc)
    else:
        assert isinstance(result, State) and (result.pid is None or result.pid >= 1)


# --- the jsonschema-free fast path ------------------------------------------------------------

FIELD_VALUES: dict[str, list[Any]] = {
    # per field: values at and around the schema's limits (valid ones first) and wrong types
    "ociVersion": ["1.2.0", "x" * 64, "x" * 65, "", None, 1, ["1"]],
    "id": ["c1", "x" * 1024, "x" * 1025, "", None, 1, {"a": "b"}],
    "status": ["creating", "created", "running", "stopped", "paused", "Created", "", 1, None],
    "bundle": ["/b", "/", "/a\n", "/" + "x" * 4095, "/" + "x" * 4096, "b", "", "/a\x00b",
               "\x00/", None, 1],
    "pid": [1, 4242, 4194304, 4194305, 0, -1, True, False, None, "1", 2.5, 1e300, []],
    "annotations": [{}, {"a": "b"}, {"": "b"}, {"a": 1}, {"a": None}, {"a": True}, {"a": ["b"]},
                    None, [], "a=b"],
    "extra": [1, None, {"x": []}],
}


def near_state(changes: dict[str, Any], removed: list[str]) -> dict[str, Any]:
    """A valid state with some fields changed and some removed."""
    document = {**GOOD, **changes}
    for key in removed:
        document.pop(key, None)
    return document


NEAR_STATE = st.builds(
    near_state,
    st.dictionaries(st.sampled_from(list(FIELD_VALUES)), st.integers(0, 12), max_size=2).map(
        lambda picks: {k: FIELD_VALUES[k][i % len(FIELD_VALUES[k])] for k, i in picks.items()}),
    st.lists(st.sampled_from(list(FIELD_VALUES)), max_size=1))


@settings(max_examples=600, deadline=None)
@given(document=st.one_of(NEAR_STATE, NEAR_STATE, JSON_VALUES))
def test_fast_check_agrees_with_the_schema(document: Any) -> None:
    """Without a float pid, the fast check accepts exactly what the schema accepts."""
    assert plainly_valid(document) == (problems(document) == [])


@pytest.mark.parametrize("pid", [42.0, 1.0, 2.5, 0.0])
def test_float_pid_takes_the_schema_path(pid: float) -> None:
    """A float pid is never plainly valid: the schema decides (42.0 is an integer to it)."""
    assert not plainly_valid(with_(pid=pid))


@pytest.mark.parametrize("document", OFFICIAL_VALID, ids=lambda d: d["id"])
def test_runtime_states_are_plainly_valid(document: dict[str, Any]) -> None:
    """The states runtimes hand a hook take the fast path."""
    assert plainly_valid(document)


def test_plain_state_is_parsed_without_the_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plainly valid state never builds the jsonschema validator."""
    def refuse() -> None:
        raise AssertionError("validator built for a plainly valid state")

    monkeypatch.setattr(state_mod, "validator", refuse)
    assert parse_state(encoded(GOOD)).pid == 4242
