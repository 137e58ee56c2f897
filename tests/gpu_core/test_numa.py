"""CPU/node id lists (parse, format) and the node cpulist reader under a sysfs root."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_core import numa

PARSE_CASES = [
    # (description, text, ids)
    ("single id", "0", {0}),
    ("one range", "0-3", {0, 1, 2, 3}),
    ("ranges and ids", "0-2,8,10-11", {0, 1, 2, 8, 10, 11}),
    ("two sockets of a dgx", "0-63,128-191", set(range(64)) | set(range(128, 192))),
    ("sysfs trailing newline", "64-127\n", set(range(64, 128))),
    ("spaces around items", " 1 , 3 ", {1, 3}),
    ("blank is a node without cpus", "\n", set()),
    ("overlapping items merge", "0-3,2-5", set(range(6))),
]


@pytest.mark.parametrize(("description", "text", "ids"), PARSE_CASES,
                         ids=[c[0] for c in PARSE_CASES])
def test_parse_ids(description: str, text: str, ids: set[int]) -> None:
    """Each list in the kernel's format parses to its set of ids."""
    assert numa.parse_ids(text) == frozenset(ids)


BAD_CASES = [
    # (description, text, message part)
    ("word", "all", "'all' is not a number"),
    ("empty item", "0,,2", "'' is not a number"),
    ("backwards range", "5-2", "runs backwards"),
    ("id beyond the cap", "0-70000", "above 65535"),
    ("huge range is refused, not expanded", "0-4000000000", "is not a number"),
    ("kernel stride syntax is not ours", "0-7:2/4", "is not a number"),
    ("negative id", "-1", "is not a number"),
    ("non-ascii digits", "\u0663", "is not a number"),
    ("text beyond the size cap", "0," * 3000, "longer than 4096"),
]


@pytest.mark.parametrize(("description", "text", "message"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_parse_ids_rejects(description: str, text: str, message: str) -> None:
    """A malformed list is an IdListError naming what is wrong."""
    with pytest.raises(numa.IdListError, match=message.replace("(", r"\(")):
        numa.parse_ids(text)


FORMAT_CASES = [
    ({0}, "0"),
    ({0, 1, 2, 3}, "0-3"),
    ({3, 1, 2, 8}, "1-3,8"),
    (set(range(64)) | set(range(128, 192)), "0-63,128-191"),
    (set(), ""),
]


@pytest.mark.parametrize(("ids", "text"), FORMAT_CASES, ids=[t or "empty" for _, t in FORMAT_CASES])
def test_format_ids(ids: set[int], text: str) -> None:
    """Ids print ascending with runs collapsed, as the kernel prints cpulists."""
    assert numa.format_ids(ids) == text


@given(st.frozensets(st.integers(min_value=0, max_value=numa.MAX_ID), max_size=50))
def test_format_then_parse_round_trips(ids: frozenset[int]) -> None:
    """Parsing a formatted set gives the set back."""
    assert numa.parse_ids(numa.format_ids(ids)) == ids


def write_node(sysfs: Path, node: int, text: str) -> None:
    directory = sysfs / "devices" / "system" / "node" / f"node{node}"
    directory.mkdir(parents=True)
    (directory / "cpulist").write_text(text)


def test_node_cpus_reads_the_cpulist(tmp_path: Path) -> None:
    """node<N>/cpulist under the sysfs root gives that node's CPUs."""
    write_node(tmp_path, 1, "64-127\n")
    assert numa.node_cpus(str(tmp_path), 1) == frozenset(range(64, 128))


UNKNOWN_CASES = [
    # (description, node asked for, cpulist written for it or None)
    ("node not described", 3, None),
    ("malformed cpulist", 0, "zero\n"),
    ("negative node is the kernel's unknown", -1, None),
]


@pytest.mark.parametrize(("description", "node", "text"), UNKNOWN_CASES,
                         ids=[c[0] for c in UNKNOWN_CASES])
def test_node_cpus_unknown(tmp_path: Path, description: str, node: int,
                           text: Optional[str]) -> None:
    """A node sysfs does not describe (or describes badly) is None: unknown, not empty."""
    if text is not None:
        write_node(tmp_path, node, text)
    assert numa.node_cpus(str(tmp_path), node) is None


def test_read_ids_reads_an_id_list_file(tmp_path: Path) -> None:
    """An online/cpulist file is read; missing or malformed files are None (unknown)."""
    from gpu_core.numa import read_ids

    (tmp_path / "online").write_text("0-3,8\n")
    (tmp_path / "bad").write_text("0-x\n")
    assert read_ids(str(tmp_path / "online")) == frozenset({0, 1, 2, 3, 8})
    assert read_ids(str(tmp_path / "bad")) is None
    assert read_ids(str(tmp_path / "missing")) is None
