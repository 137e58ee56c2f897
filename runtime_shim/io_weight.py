"""Whether the low-level runtime can give a container a block-IO weight on this host.

runc and crun write ``linux.resources.blockIO.weight`` into the container's cgroup and fail the
whole start when the file they write is missing. It is missing whenever the kernel's IO
schedulers offer no weights (no CFQ since Linux 5.0, BFQ not loaded), and on cgroup v1 for crun
whenever the weight is BFQ's: crun 1.x writes only ``blkio.weight`` ("opening file `blkio.weight`
for writing: No such file or directory"), where runc falls back to ``blkio.bfq.weight``. A
policy's IO weight is a preference; like its oom score it must never cost a container its start,
so the policy modifier sets it only where ``probe`` says the runtime can.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

CGROUP_ROOT = "/sys/fs/cgroup"


def weight_files(version: int, root_names: Iterable[str], own_names: Iterable[str]
                 ) -> frozenset[str]:
    """The weight files a new container cgroup will have, from the names in the hierarchy's root
    and in the shim's own cgroup. Weight files are not created in the root, so the root is read
    for the scheduler's other files: BFQ's ``blkio.bfq.*`` statistics (v1), iocost's
    ``io.cost.model`` (v2)."""
    root, own = set(root_names), set(own_names)
    found = set()
    if version == 1:
        if "blkio.weight" in root | own:
            found.add("blkio.weight")
        if any(name.startswith("blkio.bfq.") for name in root | own):
            found.add("blkio.bfq.weight")
    else:
        if "io.bfq.weight" in own:
            found.add("io.bfq.weight")
        if "io.weight" in own or "io.cost.model" in root:
            found.add("io.weight")
    return frozenset(found)


def runtime_can_weight(runtime: str, version: int, files: frozenset[str]) -> bool:
    """Whether ``runtime`` (its path) finds a weight file it writes among ``files``. Runtimes
    other than crun are taken to behave as runc, the reference implementation."""
    if version == 1 and os.path.basename(runtime).startswith("crun"):
        return "blkio.weight" in files
    return bool(files)


def probe(runtime: str, cgroup_root: str = CGROUP_ROOT, proc: str = "/proc/self") -> bool:
    """Read the cgroup filesystem: True when ``runtime`` can set a block-IO weight here. The
    blkio controller on a v1 hierarchy wins over v2 (hybrid hosts keep it on v1)."""
    own = own_cgroups(proc)
    v1 = os.path.join(cgroup_root, "blkio")
    if os.path.isdir(v1):
        version, top, mine = 1, v1, own.get("blkio", "/")
    elif "io" in _read(os.path.join(cgroup_root, "cgroup.controllers")).split():
        version, top, mine = 2, cgroup_root, own.get("", "/")
    else:
        return False
    own_dir = os.path.join(top, mine.lstrip("/")) if mine.strip("/") else None
    files = weight_files(version, _names(top), _names(own_dir) if own_dir else ())
    return runtime_can_weight(runtime, version, files)


def own_cgroups(proc: str) -> dict[str, str]:
    """Controller -> this process's cgroup path from ``/proc/self/cgroup`` ('' is the v2 line);
    named hierarchies and co-mounted controllers (``cpu,cpuacct``) each get an entry."""
    paths: dict[str, str] = {}
    for line in _read(os.path.join(proc, "cgroup")).splitlines():
        _, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if sep and sep2:
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            return stream.read(65536)
    except OSError:
        return ""


def _names(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []
