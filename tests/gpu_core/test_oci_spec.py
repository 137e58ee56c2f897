"""gpu_core.oci_spec: config.json read as runc's Go decoder reads it into the runtime-spec
structs."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_core import oci_spec, strict_json


def read(text: str) -> dict[str, Any]:
    return oci_spec.normalise(strict_json.loads(text, duplicates=True))


@pytest.mark.parametrize(("text", "expected"), [
    ('{"Root":{"PATH":"r"}}', {"root": {"path": "r"}}),
    ('{"proce\u017f\u017f":{"oomscoreadj":5}}', {"process": {"oomScoreAdj": 5}}),
    ('{"linux":{"\u212aernel":1}}', {"linux": {"\u212aernel": 1}}),  # no such linux field
    ('{"linux":{"resources":{"memory":{"\u212aernel":1}}}}',
     {"linux": {"resources": {"memory": {"kernel": 1}}}}),
    ('{"ho\u00dftname":"h"}', {"ho\u00dftname": "h"}),  # ß is never ss
])
def test_keys_fold_as_go_folds_them(text: str, expected: dict[str, Any]) -> None:
    """A key matches a field by Unicode simple folding (the long s U+017F is s, the Kelvin sign
    is k), and is written back in the field's one spelling; a key matching no field is kept."""
    assert read(text) == expected


def test_a_repeated_object_is_merged_into_the_earlier_one() -> None:
    """Fields the later object does not name survive (the issue's example)."""
    assert read('{"root":{"path":"a"},"Root":{"readonly":true}}') == {
        "root": {"path": "a", "readonly": True}}


def test_a_repeated_scalar_is_replaced_and_a_null_string_is_ignored() -> None:
    assert read('{"hostname":"a","HOSTNAME":"b","root":{"path":"p","path":null}}') == {
        "hostname": "b", "root": {"path": "p"}}


def test_null_resets_a_pointer_field() -> None:
    assert read('{"process":{"oomScoreAdj":5,"oomScoreAdj":null}}') == {"process": {}}


def test_a_repeated_array_of_structs_is_decoded_element_by_element() -> None:
    """Go decodes a later array into the slice already there: a struct element keeps the fields
    the new one does not name, and a truncated element comes back for a third, longer array."""
    assert read('{"mounts":[{"destination":"/a","source":"/x"},{"destination":"/b"}],'
                '"Mounts":[{"destination":"/c"}]}') == {
        "mounts": [{"destination": "/c", "source": "/x"}]}
    assert read('{"mounts":[{"destination":"/a"},{"destination":"/b","type":"t"}],'
                '"mounts":[{}],"mounts":[{},{}]}')["mounts"][1] == {"destination": "/b",
                                                                   "type": "t"}


def test_map_keys_are_exact_and_a_repeated_map_merges() -> None:
    assert read('{"annotations":{"a":"1","A":"2"},"Annotations":{"b":"3","a":"4"}}') == {
        "annotations": {"a": "4", "A": "2", "b": "3"}}


def test_unknown_fields_are_kept_with_duplicates_last_wins() -> None:
    assert read('{"x-vendor":{"k":1,"k":2},"process":{"x":[1]}}') == {
        "x-vendor": {"k": 2}, "process": {"x": [1]}}


@pytest.mark.parametrize(("text", "message"), [
    ('{"process":{"oomScoreAdj":"5"}}', "process.oomScoreAdj: expected an integer, got str"),
    ('{"process":{"oomScoreAdj":5.0}}', "process.oomScoreAdj: expected an integer"),
    ('{"process":{"user":{"uid":4294967296}}}', "process.user.uid: 4294967296 is out of range"),
    ('{"Process":{"Capabilities":{"Bounding":"CAP_SYS_ADMIN"}}}',
     "process.capabilities.bounding: expected a list, got str"),
    ('{"linux":{"devices":[{"path":7}]}}', "linux.devices[0].path: expected a string"),
    ('{"annotations":{"a":1}}', "annotations['a']: expected a string"),
    ('{"root":"rootfs"}', "root: expected an object"),
])
def test_a_type_runc_refuses_is_one_error_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(oci_spec.SpecError) as caught:
        read(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_every_struct_has_one_fold_per_tag() -> None:
    """No two fields of a struct fold alike, so the fold names one field (Struct asserts it);
    the table covers the fields the project reads."""
    linux = oci_spec.LINUX.fields
    assert {"devices", "resources", "cgroupsPath", "namespaces"} <= set(linux)
    assert {"env", "capabilities", "oomScoreAdj", "user", "args", "rlimits"} <= set(
        oci_spec.PROCESS.fields)


@pytest.mark.parametrize(("path", "bundle", "expected"), [
    ("rootfs", "/b", "/b/rootfs"),
    ("link/../x", "/b", "/b/x"),
    ("/abs/./r/", "/b", "/abs/r"),
    ("//r", "/b", "/r"),
    ("../../..", "/b", "/"),
])
def test_rootfs_is_joined_and_cleaned_as_text(path: str, bundle: str, expected: str) -> None:
    assert oci_spec.rootfs({"root": {"path": path}}, bundle) == expected
