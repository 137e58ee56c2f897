"""gpu_core.go_json: already-parsed JSON decoded as Go's encoding/json decodes it."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_core import strict_json
from gpu_core.go_json import MISSING, DecodeError, Map, Scalar, Slice, Struct, fold

STR = Scalar(str)
ITEM = Struct({"name": STR, "kind": STR}).value()
DOC = Struct({"items": Slice(ITEM), "labels": Map(STR), "size": Scalar(int, 0, 255),
              "ptr": Scalar(int, 0, 9, pointer=True), "sub": Struct({"s": STR})}, pointer=False)


def decode(text: str) -> Any:
    return DOC.decode(strict_json.loads(text, duplicates=True), MISSING)


@pytest.mark.parametrize(("key", "folded"), [
    ("NAME", "name"), ("\u017fub", "sub"), ("\u212aind", "kind"), ("stra\u00dfe", None),
    ("\u0130d", None),
])
def test_fold_is_go_simple_folding_onto_ascii(key: str, folded: Any) -> None:
    """Only ASCII case, the long s and the Kelvin sign fold onto ASCII field names."""
    assert fold(key) == folded


def test_a_folded_key_lands_in_its_field_under_the_tag() -> None:
    assert decode('{"SUB":{"S":"x"},"\\u017fize":3}') == {"sub": {"s": "x"}, "size": 3}


def test_a_later_object_merges_into_the_earlier_struct() -> None:
    assert decode('{"sub":{"s":"x","extra":1},"Sub":{"other":2}}') == {
        "sub": {"s": "x", "extra": 1, "other": 2}}


def test_a_later_array_decodes_into_the_earlier_elements() -> None:
    """golang/go#21092: element i of the new array is decoded into element i of the old."""
    assert decode('{"items":[{"name":"a","kind":"k"}],"items":[{"name":"b"}]}') == {
        "items": [{"name": "b", "kind": "k"}]}


def test_elements_cut_off_come_back_for_a_longer_array() -> None:
    got = decode('{"items":[{"name":"a"},{"name":"b","kind":"k"}],"items":[{}],'
                 '"items":[{},{}]}')
    assert got["items"] == [{"name": "a"}, {"name": "b", "kind": "k"}]


def test_an_empty_array_is_a_new_empty_slice() -> None:
    assert decode('{"items":[{"name":"a"}],"items":[],"items":[{}]}') == {"items": [{}]}


def test_map_keys_are_exact_and_values_replaced() -> None:
    assert decode('{"labels":{"a":"1","A":"2"},"LABELS":{"a":"3"}}') == {
        "labels": {"a": "3", "A": "2"}}


@pytest.mark.parametrize(("text", "expected"), [
    ('{"ptr":3,"ptr":null}', {}),
    ('{"size":3,"size":null}', {"size": 3}),
    ('{"sub":{"s":"x"},"sub":null}', {}),
    ('{"items":[{}],"items":null}', {}),
    ('{"labels":{"a":null}}', {"labels": {"a": ""}}),
])
def test_null_resets_only_pointers_slices_and_maps(text: str, expected: Any) -> None:
    assert decode(text) == expected


@pytest.mark.parametrize(("text", "where"), [
    ('{"size":"3"}', "size"), ('{"size":256}', "size"), ('{"size":1.5}', "size"),
    ('{"items":[{"name":1}]}', "items[0].name"), ('{"labels":{"k":[]}}', "labels['k']"),
    ('{"sub":[]}', "sub"), ('{"items":{}}', "items"), ('{"size":true}', "size"),
])
def test_a_value_go_refuses_names_its_place(text: str, where: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(text)
    assert caught.value.where() == where
