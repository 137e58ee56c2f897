"""Container ids that may name a lease file."""

from __future__ import annotations

import pytest

from gpu_core.container_id import is_lease_name


@pytest.mark.parametrize("cid", ["c1", "abc-DEF_0.9+x", "a" * 200])
def test_runc_ids_are_lease_names(cid: str) -> None:
    """Ids of runc's alphabet up to 200 characters can name <id>.json."""
    assert is_lease_name(cid)


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "é", "x\n", "a" * 201, "a\x00"])
def test_other_ids_are_not(cid: str) -> None:
    """Empty, dot names, separators, other characters and long ids never name a file."""
    assert not is_lease_name(cid)
