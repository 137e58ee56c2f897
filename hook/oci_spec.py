"""config.json as runc reads it: Go's ``encoding/json`` decoding into the runtime-spec structs.

runc (1.1, Go 1.19) decodes config.json into ``specs-go`` structs, and those rules decide what
the container gets, so every check and edit of ours must work on the same view:

- an object key names a struct field without regard to case, by Unicode simple folding, so
  the long s (U+017F) is ``s`` and the Kelvin sign (U+212A) is ``k``, but ``ß`` is never ``ss``; an
  exact-case match is preferred; keys that name no field are ignored by runc (kept here);
- a key given twice: a later scalar replaces the earlier value; a later object is decoded into
  the struct or map the earlier one filled (fields it does not name survive); a later array is
  decoded element by element into the slice already there (a struct element keeps the fields the
  new element does not name, and an element past the new length stays in the backing array,
  where a third, longer array finds it again);
- ``null`` resets a pointer, slice or map field and changes nothing else;
- map keys (``annotations``, ``sysctl``) are exact, a later one replacing the earlier;
- a value of the wrong JSON type, a fraction or exponent for an integer, or an integer out of the
  field's range makes runc refuse the file: a ``SpecError`` here.

``normalise`` returns that view as plain JSON values with one canonical spelling per key (the
field's JSON tag), unknown keys kept as given, so writing it back makes runc read exactly it.
Only the fields the table names are walked, which keeps a 5 000-entry spec cheap. The field
table is the runtime-spec ``specs-go/config.go`` that runc 1.1 vendors, plus fields later
releases added (runc ignores a field it does not know, whatever its spelling).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any, Optional, Union

from hook.strict_json import DuplicateKeys


class SpecError(ValueError):
    """config.json holds something runc refuses; the message names the field, in one line."""


class Scalar:
    """A string, bool or integer field; ``pointer`` when ``null`` resets it (Go ``*T``)."""

    def __init__(self, kind: str, low: int = 0, high: int = 0, pointer: bool = False) -> None:
        self.kind, self.low, self.high, self.pointer = kind, low, high, pointer


class Struct:
    """A Go struct: JSON tag -> field type; ``pointer`` for a ``*Struct`` field."""

    def __init__(self, fields: Mapping[str, Kind], pointer: bool = True) -> None:
        self.fields = dict(fields)
        self.folded = {tag.lower(): tag for tag in self.fields}
        assert len(self.folded) == len(self.fields), "two tags fold alike"
        self.pointer = pointer

    def value(self) -> Struct:
        """The same struct as a non-pointer field or slice element (``null`` leaves it)."""
        return Struct(self.fields, pointer=False)


class Slice:
    def __init__(self, element: Kind) -> None:
        self.element = element


class Map:
    def __init__(self, element: Kind) -> None:
        self.element = element


class Anything:
    """``interface{}``: decoded afresh each time, last key wins."""


Kind = Union[Scalar, Struct, Slice, Map, Anything]

STR = Scalar("str")
BOOL = Scalar("bool")
PBOOL = Scalar("bool", pointer=True)
I32 = Scalar("int", -(2 ** 31), 2 ** 31 - 1)
I64 = Scalar("int", -(2 ** 63), 2 ** 63 - 1)
PINT = Scalar("int", -(2 ** 63), 2 ** 63 - 1, pointer=True)  # Go int on a 64-bit host
PI64 = PINT
U16P = Scalar("int", 0, 2 ** 16 - 1, pointer=True)
U32 = Scalar("int", 0, 2 ** 32 - 1)
U32P = Scalar("int", 0, 2 ** 32 - 1, pointer=True)
U64 = Scalar("int", 0, 2 ** 64 - 1)
U64P = Scalar("int", 0, 2 ** 64 - 1, pointer=True)
STRS = Slice(STR)

ID_MAPPING = Struct({"containerID": U32, "hostID": U32, "size": U32}).value()
HOOK = Struct({"path": STR, "args": STRS, "env": STRS, "timeout": PINT}).value()
BLOCK_DEVICE = {"major": I64, "minor": I64}
SECCOMP_ARG = Struct({"index": U64, "value": U64, "valueTwo": U64, "op": STR}).value()

PROCESS = Struct({
    "terminal": BOOL,
    "consoleSize": Struct({"height": U64, "width": U64}),
    "user": Struct({"uid": U32, "gid": U32, "umask": U32P, "additionalGids": Slice(U32),
                    "username": STR}).value(),
    "args": STRS, "commandLine": STR, "env": STRS, "cwd": STR,
    "capabilities": Struct({"bounding": STRS, "effective": STRS, "inheritable": STRS,
                            "permitted": STRS, "ambient": STRS}),
    "rlimits": Slice(Struct({"type": STR, "hard": U64, "soft": U64}).value()),
    "noNewPrivileges": BOOL, "apparmorProfile": STR, "oomScoreAdj": PINT,
    "scheduler": Struct({"policy": STR, "nice": I32, "priority": I32, "flags": STRS,
                         "runtime": U64, "deadline": U64, "period": U64}),
    "selinuxLabel": STR,
    "ioPriority": Struct({"class": STR, "priority": I64}),
    "execCPUAffinity": Struct({"initial": STR, "final": STR}),
})

RESOURCES = Struct({
    "devices": Slice(Struct({"allow": BOOL, "type": STR, "major": PI64, "minor": PI64,
                             "access": STR}).value()),
    "memory": Struct({"limit": PI64, "reservation": PI64, "swap": PI64, "kernel": PI64,
                      "kernelTCP": PI64, "swappiness": U64P, "disableOOMKiller": PBOOL,
                      "useHierarchy": PBOOL, "checkBeforeUpdate": PBOOL}),
    "cpu": Struct({"shares": U64P, "quota": PI64, "burst": U64P, "period": U64P,
                   "realtimeRuntime": PI64, "realtimePeriod": U64P, "cpus": STR, "mems": STR,
                   "idle": PI64}),
    "pids": Struct({"limit": I64}),  # runc 1.1's spec: an int64, not yet a pointer
    "blockIO": Struct({
        "weight": U16P, "leafWeight": U16P,
        "weightDevice": Slice(Struct({**BLOCK_DEVICE, "weight": U16P,
                                      "leafWeight": U16P}).value()),
        **{name: Slice(Struct({**BLOCK_DEVICE, "rate": U64}).value())
           for name in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                        "throttleReadIOPSDevice", "throttleWriteIOPSDevice")},
    }),
    "hugepageLimits": Slice(Struct({"pageSize": STR, "limit": U64}).value()),
    "network": Struct({"classID": U32P,
                       "priorities": Slice(Struct({"name": STR, "priority": U32}).value())}),
    "rdma": Map(Struct({"hcaHandles": U32P, "hcaObjects": U32P}).value()),
    "unified": Map(STR),
})

LINUX = Struct({
    "uidMappings": Slice(ID_MAPPING), "gidMappings": Slice(ID_MAPPING),
    "sysctl": Map(STR),
    "resources": RESOURCES,
    "cgroupsPath": STR,
    "namespaces": Slice(Struct({"type": STR, "path": STR}).value()),
    "devices": Slice(Struct({"path": STR, "type": STR, "major": I64, "minor": I64,
                             "fileMode": U32P, "uid": U32P, "gid": U32P}).value()),
    "netDevices": Map(Struct({"name": STR}).value()),
    "seccomp": Struct({
        "defaultAction": STR, "defaultErrnoRet": U64P, "architectures": STRS, "flags": STRS,
        "listenerPath": STR, "listenerMetadata": STR,
        "syscalls": Slice(Struct({"names": STRS, "action": STR, "errnoRet": U64P,
                                  "args": Slice(SECCOMP_ARG)}).value()),
    }),
    "rootfsPropagation": STR, "maskedPaths": STRS, "readonlyPaths": STRS, "mountLabel": STR,
    "intelRdt": Struct({"closID": STR, "schemata": STRS, "l3CacheSchema": STR,
                        "memBwSchema": STR, "enableMonitoring": BOOL}),
    "memoryPolicy": Struct({"mode": STR, "nodes": STR, "flags": STRS}),
    "personality": Struct({"domain": STR, "flags": STRS}),
    "timeOffsets": Map(Struct({"secs": I64, "nanosecs": U32}).value()),
})

HOOKS = Struct({name: Slice(HOOK) for name in (
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")})

# Other platforms' sections: runc never reads them, but their spelling is folded all the same.
OTHER_PLATFORMS: dict[str, Kind] = {
    "solaris": Anything(), "windows": Anything(), "vm": Anything(), "zos": Anything(),
    "freebsd": Anything(),
}

SPEC = Struct({
    "ociVersion": STR,
    "process": PROCESS,
    "root": Struct({"path": STR, "readonly": BOOL}),
    "hostname": STR, "domainname": STR,
    "mounts": Slice(Struct({"destination": STR, "type": STR, "source": STR, "options": STRS,
                            "uidMappings": Slice(ID_MAPPING),
                            "gidMappings": Slice(ID_MAPPING)}).value()),
    "hooks": HOOKS,
    "annotations": Map(STR),
    "linux": LINUX,
    **OTHER_PLATFORMS,
}, pointer=False)

MISSING: Any = object()
"""A field runc leaves at its zero value (absent from the view)."""
RESET: Any = object()
"""``null`` into a pointer, slice or map: the field is nil (absent from the view)."""
GO_FOLDS = str.maketrans({"\u017f": "s", "\u212a": "k"})


def fold(key: str) -> Optional[str]:
    """``key`` folded as Go compares it with an ASCII field name; None when it matches none."""
    if not key.isascii():
        key = key.translate(GO_FOLDS)
        if not key.isascii():
            return None
    return key.lower()


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def mismatch(where: str, wanted: str, value: Any) -> SpecError:
    return SpecError(f"{where}: expected {wanted}, got {type_name(value)} (runc refuses it)")


class GoSlice(list):  # type: ignore[type-arg]  # holds any JSON value
    """A decoded slice that remembers Go's backing array past its length (``spare``)."""

    cap: int
    spare: list[Any]


def fresh_cap(length: int) -> int:
    """The capacity Go's decoder ends with after appending ``length`` elements to nil."""
    cap = 0
    while cap < length:
        cap = max(cap + cap // 2, 4)
    return cap


def zero(kind: Kind) -> Any:
    if isinstance(kind, Scalar) and not kind.pointer:
        return {"str": "", "bool": False}.get(kind.kind, 0)
    return {} if isinstance(kind, Struct) else None


def decode(raw: Any, kind: Kind, current: Any, where: str) -> Any:
    """``raw`` decoded as runc decodes it into a field of ``kind`` holding ``current``
    (MISSING when unset); MISSING or RESET when the field ends up unset."""
    if raw is None:
        if isinstance(kind, (Slice, Map, Anything)) or getattr(kind, "pointer", False):
            return RESET
        return current
    if isinstance(kind, Struct):
        return decode_struct(raw, kind, current, where)
    if isinstance(kind, Scalar):
        if kind.kind == "str":
            if type(raw) is not str:
                raise mismatch(where, "a string", raw)
        elif kind.kind == "bool":
            if type(raw) is not bool:
                raise mismatch(where, "a boolean", raw)
        elif type(raw) is not int:
            raise mismatch(where, "an integer", raw)
        elif not kind.low <= raw <= kind.high:
            raise SpecError(f"{where}: {raw} is out of range (runc refuses it)")
        return raw
    if isinstance(kind, Slice):
        if type(raw) is not list:
            raise mismatch(where, "an array", raw)
        return decode_slice(raw, kind.element, current, where)
    if isinstance(kind, Map):
        if not isinstance(raw, dict):
            raise mismatch(where, "an object", raw)
        result = dict(current) if isinstance(current, dict) else {}
        pairs = raw.pairs if isinstance(raw, DuplicateKeys) else raw.items()
        for key, value in pairs:
            got = decode(value, kind.element, MISSING, f"{where}[{key!r}]")
            result[key] = zero(kind.element) if got is MISSING or got is RESET else got
        return result
    return raw  # Anything: a fresh value, duplicates already last-wins


def decode_struct(raw: Any, kind: Struct, current: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise mismatch(where, "an object", raw)
    result = dict(current) if isinstance(current, dict) else {}
    pairs = raw.pairs if isinstance(raw, DuplicateKeys) else raw.items()
    fields = kind.fields
    for key, value in pairs:
        tag = key if key in fields else kind.folded.get(fold(key) or "")
        if tag is None:
            result[key] = value  # runc ignores it; kept for the engine's sake
            continue
        got = decode(value, fields[tag], result.get(tag, MISSING),
                     f"{where}.{tag}" if where else tag)
        if got is MISSING or got is RESET:
            result.pop(tag, None)
        else:
            result[tag] = got
    return result


def decode_slice(raw: list[Any], element: Kind, current: Any, where: str) -> list[Any]:
    if not raw:
        return []  # Go makes a new empty slice
    if current is MISSING or current is None:
        if element is STR and all(type(item) is str for item in raw):
            return raw  # the common case (env, args, options), at C speed
        length, backing = 0, []
    else:
        length = len(current)
        spare = current.spare if isinstance(current, GoSlice) else \
            [None] * (fresh_cap(length) - length)
        backing = [*current, *spare]
    for i, item in enumerate(raw):
        if i >= len(backing):  # grow: Go copies the first len elements, the rest are zero
            backing = backing[:length] + [None] * (max(len(backing) * 3 // 2, 4) - length)
        if i >= length:
            length = i + 1
        existing = backing[i]
        got = decode(item, element, MISSING if existing is None else existing,
                     f"{where}[{i}]")
        backing[i] = zero(element) if got is MISSING or got is RESET else got
    length = len(raw)
    result = GoSlice(backing[:length])
    result.spare = backing[length:]
    if any(item is None for item in result):
        result[:] = [zero(element) if item is None else item for item in result]
    return result


def normalise(document: Any) -> dict[str, Any]:
    """The spec runc reads from ``document`` (JSON as ``hook.strict_json.loads`` with
    ``duplicates=True`` parses it); raises SpecError."""
    if not isinstance(document, dict):
        raise mismatch("config.json", "a JSON object", document)
    return decode_struct(document, SPEC, MISSING, "")


def go_clean(path: str) -> str:
    """``path`` cleaned as text, as Go's filepath.Clean does (``a/../b`` is ``b``; unlike
    posixpath.normpath, a leading ``//`` is ``/``)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def rootfs(spec: Mapping[str, Any], bundle: str) -> Optional[str]:
    """The host path runc uses as the container's root: ``root.path`` of the normalised spec,
    joined to ``bundle`` (runc's working directory) unless absolute, cleaned as text. None when
    config.json names none."""
    root = spec.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    return go_clean(posixpath.join(bundle, path))
