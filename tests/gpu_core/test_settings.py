"""The typed configuration (gpu_core/settings.py): one record per schema section, built once
from the validated document, every value of its declared type."""

from __future__ import annotations

import json
from typing import Any

import pytest

import schemas
from gpu_core import config as config_mod
from gpu_core import settings

SCHEMA = schemas.load("config.schema.json")
SECTIONS = [name for name, body in SCHEMA["properties"].items()
            if body.get("type") == "object" and "properties" in body]


def typed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("name", SECTIONS)
def test_every_schema_key_is_a_typed_field(name: str) -> None:
    """A key added to the schema without a field in its record fails here."""
    record = getattr(config_mod.defaults(), name)
    assert set(record._fields) == set(SCHEMA["properties"][name]["properties"])


def test_policy_fields_are_the_schema_policy_keys() -> None:
    assert set(settings.Policy._fields) - {"name"} == \
        set(SCHEMA["definitions"]["policy"]["properties"])


@pytest.mark.parametrize("name", [name for name in SECTIONS if config_mod.DEFAULTS[name]])
def test_defaults_hold_the_documented_values(name: str) -> None:
    record = getattr(config_mod.defaults(), name)
    assert record._asdict() == {key: typed(value)
                                for key, value in config_mod.DEFAULTS[name].items()}


def test_runtimes_are_a_tuple_of_names() -> None:
    assert config_mod.defaults().runtimes == tuple(config_mod.DEFAULTS["runtimes"])


def test_shipped_policies_are_records() -> None:
    policies = config_mod.defaults().policies
    assert policies["burstable"] == settings.Policy(name="burstable", oom_score_adj=500,
                                                    numa=True)
    assert policies["guaranteed"].blkio_weight == 800


@pytest.mark.parametrize("text, read", [
    ("hook: {timeout: 30.0}", lambda c: c.hook.timeout),
    ("retry: {attempts: 3.0}", lambda c: c.retry.attempts),
    ("oom: {floor: -500.0}", lambda c: c.oom.floor),
    ("policies: {p: {blkio_weight: 300.0}}", lambda c: c.policies["p"].blkio_weight),
])
def test_an_integer_written_with_a_point_reads_as_int(text: str, read: Any) -> None:
    """JSON Schema's ``integer`` admits 30.0; the record holds the int, as int() did before."""
    value = read(config_mod.parse(text, "t.yaml"))
    assert type(value) is int


@pytest.mark.parametrize("text, read", [
    ("readiness: {timeout: 5}", lambda c: c.readiness.timeout),
    ("retry: {deadline: 7}", lambda c: c.retry.deadline),
    ("retry: {max_backoff: 1}", lambda c: c.retry.max_backoff),
])
def test_a_whole_number_reads_as_float(text: str, read: Any) -> None:
    assert type(read(config_mod.parse(text, "t.yaml"))) is float


def test_a_policy_leaves_unset_edits_unset() -> None:
    policy = config_mod.parse("policies: {p: {numa: true}}", "t.yaml").policies["p"]
    assert policy == settings.Policy(name="p", numa=True)


def test_no_simulation_is_an_empty_dir() -> None:
    assert config_mod.defaults().simulation == settings.SimulationSettings(dir="", topology="")


def test_records_are_immutable() -> None:
    config = config_mod.defaults()
    with pytest.raises(AttributeError):
        config.mig.lease_dir = "/tmp"  # type: ignore[misc]  # the point: it is read-only


@pytest.mark.parametrize("override, named", [
    ({"retry": {"attempts": "5"}}, "retry.attempts: expected an integer"),
    ({"retry": {"attempts": True}}, "retry.attempts: expected an integer"),
    ({"retry": {"attempts": 2.5}}, "retry.attempts: expected an integer"),
    ({"mig": {"exclusive_explicit": 1}}, "mig.exclusive_explicit: expected a boolean"),
    ({"readiness": {"interval": "fast"}}, "readiness.interval: expected a number"),
    ({"hook": {"args": ["a", 1]}}, "hook.args: expected a list of strings"),
    ({"log": "quiet"}, "log: expected a mapping"),
    ({"runtimes": []}, "runtimes: expected a non-empty list of names"),
    ({"mode": "cdi"}, "mode: expected one of hook, spec"),
    ({"mode": True}, "mode: expected one of hook, spec"),
    ({"spec": {"hook_timeout": "10"}}, "spec.hook_timeout: expected an integer"),
    ({"spec": {"hook_path": 7}}, "spec.hook_path: expected a string"),
    ({"policies": {"p": {"numa": "yes"}}}, "policies.p.numa: expected a boolean"),
])
def test_a_value_of_the_wrong_type_is_named(override: dict[str, Any], named: str) -> None:
    """Values that skipped the schema (a test's mapping, a cache entry) are checked too."""
    with pytest.raises(config_mod.ConfigError) as info:
        config_mod.from_mapping(override, "m")
    assert info.value.problems == [named]


def test_a_missing_key_is_named() -> None:
    document = config_mod.merge(config_mod.DEFAULTS, {})
    del document["requests"]["cdi_spec_dirs"]
    with pytest.raises(ValueError, match=r"^requests\.cdi_spec_dirs: missing$"):
        settings.build("m", document)


def test_the_document_round_trips_through_json() -> None:
    """What the cache stores builds the same configuration again."""
    config = config_mod.parse("runtimes: [crun]\npolicies: {p: {oom_score_adj: 1}}", "t")
    again = settings.build("t", json.loads(json.dumps(config.document)))
    assert again == config


def test_the_policy_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        # mypy sees the Mapping as read-only too; the point is that it is at run time
        config_mod.defaults().policies["mine"] = settings.Policy(name="mine")  # type: ignore[index]


def test_the_mode_is_hook_unless_the_file_says_spec() -> None:
    assert config_mod.defaults().mode == "hook"
    assert config_mod.parse("mode: spec", "t").mode == "spec"


def test_the_spec_section_reads_as_typed_values() -> None:
    config = config_mod.parse("spec: {hook_path: /opt/h, hook_timeout: 4.0, ldconfig: /l}", "t")
    assert config.spec == settings.SpecSettings(hook_path="/opt/h", hook_timeout=4,
                                                ldconfig="/l")


@pytest.mark.parametrize("text", ["mode: cdi", "mode: SPEC", "spec: {hook_timeout: 1}",
                                  "spec: {hook_path: relative}", "spec: {ldconfig: sbin/x}",
                                  "spec: {extra: 1}"])
def test_a_bad_mode_or_spec_value_fails_validation(text: str) -> None:
    with pytest.raises(config_mod.ConfigError):
        config_mod.parse(text, "t")
