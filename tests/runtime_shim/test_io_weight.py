"""Whether the low-level runtime can set a block-IO weight: the files a cgroup offers, what each
runtime writes, and the probe over a fake cgroup filesystem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from runtime_shim import io_weight

BFQ_V1_ROOT = ("blkio.bfq.io_service_bytes", "blkio.reset_stats", "cgroup.procs")
"""What this project's Debian 12 test machines show in /sys/fs/cgroup/blkio with BFQ loaded."""

FILES_CASES = [
    # (description, version, names in the root, names in our own cgroup, weight files)
    ("v1 with bfq: bfq weight in children", 1, BFQ_V1_ROOT, (), {"blkio.bfq.weight"}),
    ("v1 with cfq", 1, ("blkio.reset_stats",), ("blkio.weight", "blkio.leaf_weight"),
     {"blkio.weight"}),
    ("v1 without weighting schedulers", 1, ("blkio.throttle.read_bps_device",), (), set()),
    ("v2 with iocost", 2, ("io.cost.model", "io.cost.qos", "io.stat"), (), {"io.weight"}),
    ("v2 bfq seen in our own cgroup", 2, ("io.stat",), ("io.bfq.weight", "io.max"),
     {"io.bfq.weight"}),
    ("v2 io controller without weights", 2, ("io.stat",), ("io.max", "io.stat"), set()),
]


@pytest.mark.parametrize(("description", "version", "root", "own", "expected"), FILES_CASES,
                         ids=[c[0] for c in FILES_CASES])
def test_weight_files(description: str, version: int, root: Sequence[str], own: Sequence[str],
                      expected: set[str]) -> None:
    """The weight files a new cgroup will have follow from the schedulers' files."""
    assert io_weight.weight_files(version, root, own) == frozenset(expected)


RUNTIME_CASES = [
    # (runtime path, cgroup version, weight files, can weight)
    ("/usr/sbin/runc", 1, {"blkio.bfq.weight"}, True),
    ("/usr/bin/crun", 1, {"blkio.bfq.weight"}, False),
    ("/usr/bin/crun", 1, {"blkio.weight"}, True),
    ("/usr/bin/crun", 2, {"io.weight"}, True),
    ("/usr/sbin/runc", 2, set(), False),
    ("/opt/other/runtime", 1, {"blkio.bfq.weight"}, True),
]


@pytest.mark.parametrize(("runtime", "version", "files", "expected"), RUNTIME_CASES,
                         ids=[f"{r.rsplit('/', 1)[-1]}-v{v}-{','.join(sorted(f)) or 'none'}"
                              for r, v, f, _ in RUNTIME_CASES])
def test_runtime_can_weight(runtime: str, version: int, files: set[str],
                            expected: bool) -> None:
    """crun on v1 needs blkio.weight; runc (and runtimes taken to act like it) any weight file."""
    assert io_weight.runtime_can_weight(runtime, version, frozenset(files)) is expected


def fake_host(tmp_path: Path, cgroup_lines: str, files: dict[str, str]) -> tuple[str, str]:
    """A cgroup root and /proc/self holding ``files`` (relative paths) and ``cgroup_lines``."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup_lines)
    root.mkdir()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root), str(proc)


HYBRID_BFQ = ("7:blkio:/\n4:memory:/x\n0::/\n",
              {"blkio/blkio.bfq.io_service_bytes": "", "unified/cgroup.controllers": ""})
V1_CFQ_IN_OWN = ("3:blkio:/system.slice/containerd.service\n",
                 {"blkio/blkio.reset_stats": "",
                  "blkio/system.slice/containerd.service/blkio.weight": "500\n"})
V2_IOCOST = ("0::/system.slice/containerd.service\n",
             {"cgroup.controllers": "cpuset cpu io memory pids\n", "io.cost.model": ""})
V2_NO_IO = ("0::/\n", {"cgroup.controllers": "cpu memory pids\n"})

PROBE_CASES = [
    # (description, host, runtime, can weight)
    ("hybrid host with bfq, runc", HYBRID_BFQ, "/usr/sbin/runc", True),
    ("hybrid host with bfq, crun", HYBRID_BFQ, "/usr/bin/crun", False),
    ("v1 cfq seen in our own cgroup, crun", V1_CFQ_IN_OWN, "/usr/bin/crun", True),
    ("v2 with iocost, crun", V2_IOCOST, "/usr/bin/crun", True),
    ("v2 without the io controller", V2_NO_IO, "/usr/sbin/runc", False),
    ("no cgroup filesystem at all", ("", {}), "/usr/sbin/runc", False),
]


@pytest.mark.parametrize(("description", "host", "runtime", "expected"), PROBE_CASES,
                         ids=[c[0] for c in PROBE_CASES])
def test_probe(tmp_path: Path, description: str, host: tuple[str, dict[str, str]],
               runtime: str, expected: bool) -> None:
    """The probe reads the hierarchy holding blkio/io and our own cgroup in it."""
    root, proc = fake_host(tmp_path, *host)
    assert io_weight.probe(runtime, cgroup_root=root, proc=proc) is expected
