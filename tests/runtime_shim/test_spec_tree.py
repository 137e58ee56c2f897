"""Copy-on-write access to nested config.json fields."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gpu_core.errors import ShimError
from runtime_shim.spec_tree import get_in, set_in

PATH = ("linux", "resources", "cpu", "cpus")


def spec() -> dict[str, Any]:
    return {"process": {"args": ["sh"]},
            "linux": {"namespaces": [{"type": "pid"}], "resources": {"memory": {"limit": 1}}}}


class TestGetIn:
    def test_present_value(self) -> None:
        """A value at the end of the path is returned."""
        assert get_in(spec(), ("linux", "resources", "memory", "limit")) == 1

    @pytest.mark.parametrize("path", [PATH, ("process", "args", "x"), ("nope",)],
                             ids=["missing", "through a list", "missing top level"])
    def test_absent_is_none(self, path: tuple[str, ...]) -> None:
        """A missing field, or one under something that is not an object, reads as None."""
        assert get_in(spec(), path) is None


class TestSetIn:
    def test_creates_missing_objects(self) -> None:
        """Objects missing on the path are created; siblings stay."""
        result = set_in(spec(), PATH, "0-3", "numa")
        assert result["linux"]["resources"] == {"memory": {"limit": 1}, "cpu": {"cpus": "0-3"}}

    def test_leaves_input_alone_and_shares_the_rest(self) -> None:
        """The input is unchanged; objects off the path are the same objects."""
        original = spec()
        before = copy.deepcopy(original)
        result = set_in(original, PATH, "0-3", "numa")
        assert original == before
        assert result["process"] is original["process"]
        assert result["linux"]["namespaces"] is original["linux"]["namespaces"]
        assert result["linux"] is not original["linux"]

    def test_non_object_on_the_path_is_an_error(self) -> None:
        """A list where an object belongs is a stage error naming the field."""
        bad: dict[str, Any] = {"linux": {"resources": []}}
        with pytest.raises(ShimError, match=r"^numa: config.json linux.resources is list, "
                                            r"not an object$"):
            set_in(bad, PATH, "0-3", "numa")
