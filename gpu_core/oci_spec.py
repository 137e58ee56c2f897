"""config.json as runc reads it: Go's ``encoding/json`` decoding into the runtime-spec structs.

runc (1.1) decodes config.json with Go's ``encoding/json`` into the ``specs-go`` structs, and those
rules (gpu_core.go_json: keys folded without regard to case, long s and Kelvin sign included, a
repeated object merged into the earlier one, ``null`` resetting only pointers, slices and maps, type
mismatches refused) decide what the container gets, so every check and edit of ours must work on the
same view.

``normalise`` returns that view as plain JSON values with one canonical spelling per key (the
field's JSON tag), unknown keys kept as given, so writing it back makes runc read exactly it.
Only the fields the table names are walked, which keeps a 5 000-entry spec cheap. The field
table is the runtime-spec ``specs-go/config.go`` that runc 1.1 vendors (``pids.limit`` still an
int64), plus the fields later releases added, folded and type-checked as a newer runc reads them
(runc 1.1 ignores them whatever their spelling). Other platforms' sections are folded by name
only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any, Optional

from gpu_core.go_json import (
    MISSING,
    Anything,
    DecodeError,
    Map,
    Scalar,
    Slice,
    Struct,
    Type,
)


class SpecError(ValueError):
    """config.json holds something runc refuses; the message names the field, in one line."""


STR = Scalar(str)
BOOL = Scalar(bool)
PBOOL = Scalar(bool, pointer=True)
I32 = Scalar(int, -(2 ** 31), 2 ** 31 - 1)
I64 = Scalar(int, -(2 ** 63), 2 ** 63 - 1)
PINT = Scalar(int, -(2 ** 63), 2 ** 63 - 1, pointer=True)  # Go's int on a 64-bit host
PI64 = PINT
U16P = Scalar(int, 0, 2 ** 16 - 1, pointer=True)
U32 = Scalar(int, 0, 2 ** 32 - 1)
U32P = Scalar(int, 0, 2 ** 32 - 1, pointer=True)
U64 = Scalar(int, 0, 2 ** 64 - 1)
U64P = Scalar(int, 0, 2 ** 64 - 1, pointer=True)
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
OTHER_PLATFORMS: dict[str, Type] = {
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

def normalise(document: Any) -> dict[str, Any]:
    """The spec runc reads from ``document`` (JSON as ``gpu_core.strict_json.loads`` with
    ``duplicates=True`` parses it); raises SpecError."""
    if not isinstance(document, dict):
        raise SpecError("expected a JSON object")
    try:
        spec: dict[str, Any] = SPEC.decode(document, MISSING)
    except DecodeError as error:
        raise SpecError(f"{error.where()}: {error.message}") from None
    return spec


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
