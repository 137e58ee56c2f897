"""NUMA topology: the kernel's id-list format and the node cpulists in sysfs.

One format serves sysfs (``node<N>/cpulist``), cpusets and OCI ``linux.resources.cpu.cpus`` /
``.mems``: ``0-63,128-191``. ``parse_ids``, ``format_ids`` are pure; ``node_cpus`` reads sysfs at
the edge. A GPU's own node comes from discovery (``Gpu.numa_node``, the PCI device's
``numa_node`` file, where -1 means unknown).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Optional

MAX_ID = 65535
"""Largest CPU or node id accepted. Lists in config.json come from the engine and the image's
user; ``0-4000000000`` must be refused, not expanded (kernels cap CPUs at 8192)."""

MAX_TEXT = 4096
"""The longest list read or parsed: a sysfs cpulist of 8192 CPUs fits many times over."""

_SPAN = r"(\d{1,5})(?:-(\d{1,5}))?"  # matched through re's cache: compiled on first use


class IdListError(ValueError):
    """A CPU or memory-node list that is not in the kernel's ``a-b,c`` form."""


def parse_ids(text: str) -> frozenset[int]:
    """``0-3,8`` -> {0, 1, 2, 3, 8}; blank text is the empty set (a node without CPUs)."""
    if len(text) > MAX_TEXT:
        raise IdListError(f"list longer than {MAX_TEXT} characters")
    stripped = text.strip()
    if not stripped:
        return frozenset()
    ids: set[int] = set()
    for item in stripped.split(","):
        match = re.fullmatch(_SPAN, item.strip(), re.ASCII)
        if match is None:
            raise IdListError(f"{item.strip()[:32]!r} is not a number or a range a-b")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high > MAX_ID:
            raise IdListError(f"id {high} above {MAX_ID}")
        if high < low:
            raise IdListError(f"range {low}-{high} runs backwards")
        ids.update(range(low, high + 1))
    return frozenset(ids)


def format_ids(ids: Iterable[int]) -> str:
    """{0, 1, 2, 3, 8} -> ``0-3,8``: ascending, runs collapsed, as the kernel prints them."""
    spans: list[list[int]] = []
    for number in sorted(set(ids)):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def node_cpus(sysfs_root: str, node: int) -> Optional[frozenset[int]]:
    """The CPUs of NUMA node ``node`` from ``<sysfs_root>/devices/system/node/node<N>/cpulist``;
    None when the file is missing or unreadable, so the caller can say the node is unknown."""
    if node < 0:
        return None
    return read_ids(os.path.join(sysfs_root, "devices/system/node", f"node{node}", "cpulist"))


def read_ids(path: str) -> Optional[frozenset[int]]:
    """The id list in the file at ``path`` (a cpulist, ``cpu/online``, a cpuset file); None when
    it is missing, unreadable or not an id list."""
    try:
        with open(path, encoding="ascii") as stream:
            return parse_ids(stream.read(MAX_TEXT + 1))
    except (OSError, UnicodeDecodeError, IdListError):
        return None
