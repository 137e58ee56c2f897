"""The OCI state a hook reads on stdin (runtime-spec ``runtime.md`` §State).

The state is untrusted input like everything a container brings: it is read with a size limit,
parsed with duplicate keys refused (two ``pid`` keys must not mean whichever the parser kept),
and validated against ``schemas/state.schema.json``. Every problem is reported as
``field: message`` in one ``state:`` error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Optional, Union

from gpu_core import strict_json
from gpu_core.errors import ShimError, one_line

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

STAGE = "state"
SCHEMA = "state.schema.json"
DEFAULT_LIMIT = 1 << 20
"""A real state is a few hundred bytes plus annotations; a megabyte is already generous."""

_validator: Optional[Validator] = None


@dataclass(frozen=True)
class State:
    """The validated container state; ``pid`` is None when the runtime left it out
    (a stopped container)."""

    oci_version: str
    id: str
    status: str
    bundle: str
    pid: Optional[int] = None
    annotations: Mapping[str, str] = field(default_factory=dict)


def validator() -> Validator:
    """The state validator, built once per process."""
    global _validator
    if _validator is None:
        import jsonschema  # lazily: the hook's start path pays only when it reads state

        import schemas

        schema = schemas.load(SCHEMA)
        _validator = jsonschema.Draft7Validator(schema)
    return _validator


def problems(document: Any) -> list[str]:
    """Validate a parsed state document; one ``field: message`` per problem, bounded."""
    found = []
    for error in sorted(validator().iter_errors(document),
                        key=lambda e: [str(part) for part in e.absolute_path]):
        where = ".".join(str(part) for part in error.absolute_path) or "<root>"
        found.append(one_line(f"{where}: {error.message}", 300))
    return found


STATUSES = frozenset(("creating", "created", "running", "stopped"))
"""``status``'s enum in the schema, for ``plainly_valid``."""
MAX_PID = 4194304
"""``pid``'s maximum in the schema (the kernel's PID_MAX_LIMIT)."""


def plainly_valid(document: Any) -> bool:
    """True only for a state the schema certainly accepts, checked without importing
    jsonschema (its import was a quarter of a GPU hook's instructions). False says nothing:
    ``problems`` then decides and names what is wrong, so messages stay the schema's.
    tests/hook/test_state.py holds this to the schema with hypothesis."""
    if type(document) is not dict:
        return False
    version, cid = document.get("ociVersion"), document.get("id")
    bundle, pid = document.get("bundle"), document.get("pid", 1)
    annotations = document.get("annotations", {})
    # type() is: a bool is no integer to the schema, and JSON gives no str or dict subclass
    return (type(version) is str and 1 <= len(version) <= 64
            and type(cid) is str and 1 <= len(cid) <= 1024
            and type(document.get("status")) is str and document["status"] in STATUSES
            and type(bundle) is str and bundle.startswith("/") and "\x00" not in bundle
            and len(bundle) <= 4096
            and type(pid) is int and 1 <= pid <= MAX_PID
            and type(annotations) is dict
            and all(type(key) is str and key and type(value) is str
                    for key, value in annotations.items()))


def _pid(value: Any) -> Optional[int]:
    """Draft 7 counts 42.0 as an integer; the hook hands pids to C, so make it an int."""
    return None if value is None else int(value)


def parse_state(data: Union[bytes, str]) -> State:
    """Parse and validate state JSON already read; raise ShimError ``state: ...``."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ShimError(STAGE, f"not UTF-8 at byte {exc.start}") from None
    if not data.strip():
        raise ShimError(STAGE, "empty input; expected the container state JSON on stdin")
    try:
        document = strict_json.loads(data)
    except strict_json.StrictJsonError as exc:
        raise ShimError(STAGE, str(exc)) from None
    found = [] if plainly_valid(document) else problems(document)
    if found:
        raise ShimError(STAGE, "; ".join(found[:20]))
    return State(oci_version=document["ociVersion"], id=document["id"],
                 status=document["status"], bundle=document["bundle"],
                 pid=_pid(document.get("pid")), annotations=dict(document.get("annotations", {})))


def load_state(stream: IO[Any], limit: int = DEFAULT_LIMIT) -> State:
    """Read the state from ``stream`` (binary or text, normally stdin), at most ``limit``
    bytes (characters for a text stream), and validate it."""
    try:
        data = stream.read(limit + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise ShimError(STAGE, f"cannot read: {one_line(str(exc), 200)}") from None
    if not isinstance(data, (bytes, str)):
        raise ShimError(STAGE, f"cannot read: got {type(data).__name__}")
    if len(data) > limit:
        raise ShimError(STAGE, f"input larger than {limit} bytes")
    return parse_state(data)
