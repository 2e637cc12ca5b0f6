"""The canonical manifest form, its YAML, its fingerprints and its validation."""

import copy
from datetime import UTC, date, datetime
from typing import Any

import pytest

from dockyard.controller import manifests
from dockyard.errors import InvalidInput
from tests.unit import samples
from tests.unit.samples import AFTER_HELLO, DASHBOARD, HELLO, SLEEPER, TINY_API


def as_generated(m: dict[str, Any]) -> dict[str, Any]:
    """What dlt's worker hands over: typed datetimes and version bookkeeping included."""
    generated = copy.deepcopy(m)
    generated.update(
        created_at=datetime(2026, 3, 4, 10, 0, 1, 123456, tzinfo=UTC),
        version=7,
        version_hash="kq3JtJ0N1mJ8o1Xw2r1Uq6yq0Z2eEo9yq3x0u0o1b7k=",
        previous_hashes=["Ym9ndXM=", "b2xkZXI="],
    )
    return generated


def reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


def full_manifest() -> dict[str, Any]:
    return samples.manifest(HELLO, AFTER_HELLO, SLEEPER, TINY_API, DASHBOARD)


# canonical form -------------------------------------------------------------------------------
def test_canonical_drops_volatile_fields_only_at_the_top() -> None:
    m = full_manifest()

    clean = manifests.canonical(as_generated(m))

    assert clean == m
    assert not set(manifests.VOLATILE_FIELDS) & set(clean)


def test_canonical_turns_datetimes_and_tuples_into_json_types() -> None:
    m = samples.manifest(HELLO)
    m["jobs"][0]["interval"] = {
        "start": datetime(2026, 1, 1, tzinfo=UTC),
        "end": date(2026, 2, 1),
    }
    m["jobs"][0]["triggers"] = ("schedule:0 * * * *",)

    clean = manifests.canonical(m)

    assert clean["jobs"][0]["interval"] == {
        "start": "2026-01-01T00:00:00+00:00",
        "end": "2026-02-01",
    }
    assert clean["jobs"][0]["triggers"] == ["schedule:0 * * * *"]


def test_canonical_does_not_modify_its_input() -> None:
    generated = as_generated(full_manifest())
    before = copy.deepcopy(generated)

    manifests.canonical(generated)

    assert generated == before


# YAML -----------------------------------------------------------------------------------------
def test_identical_content_gives_identical_bytes_whatever_the_key_order() -> None:
    m = full_manifest()

    a = manifests.dump_yaml(as_generated(m))
    b = manifests.dump_yaml(reversed_keys(m))

    assert a == b
    assert a.encode() == manifests.dump_yaml(copy.deepcopy(m)).encode()


def test_volatile_fields_never_reach_the_yaml() -> None:
    text = manifests.dump_yaml(as_generated(full_manifest()))

    assert "created_at" not in text
    assert "version_hash" not in text
    assert "previous_hashes" not in text


def test_yaml_round_trip_gives_the_canonical_form() -> None:
    m = as_generated(full_manifest())
    m["jobs"][2]["interval"] = {"start": datetime(2026, 1, 1, tzinfo=UTC)}

    loaded = manifests.load_yaml(manifests.dump_yaml(m))

    assert loaded == manifests.canonical(m)
    assert loaded["jobs"][2]["interval"]["start"] == "2026-01-01T00:00:00+00:00"


def test_yaml_keeps_strings_that_look_like_other_types_as_strings() -> None:
    m = samples.manifest(HELLO)
    m["jobs"][0]["expose"]["tags"] = ["yes", "1.0", "null", "2026-01-01", "ünïcode"]

    loaded = manifests.load_yaml(manifests.dump_yaml(m).encode())

    assert loaded["jobs"][0]["expose"]["tags"] == ["yes", "1.0", "null", "2026-01-01", "ünïcode"]


def test_hand_written_unquoted_timestamps_become_strings() -> None:
    text = (
        "engine_version: 2\n"
        "jobs:\n"
        "- job_ref: jobs.__deployment__.hello\n"
        "  interval:\n"
        "    start: 2026-01-01T00:00:00Z\n"
        "    end: 2026-02-01\n"
    )

    interval = manifests.load_yaml(text)["jobs"][0]["interval"]

    assert interval == {"start": "2026-01-01T00:00:00+00:00", "end": "2026-02-01"}


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_a_yaml_document_that_is_not_a_mapping_is_invalid(text: str) -> None:
    with pytest.raises(InvalidInput, match="must hold a mapping"):
        manifests.load_yaml(text)


def test_broken_yaml_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"^manifest\.yaml is not valid YAML"):
        manifests.load_yaml("engine_version: [2\njobs: []\n")


# fingerprints ---------------------------------------------------------------------------------
def test_fingerprint_ignores_key_order() -> None:
    job = samples.job(SLEEPER)

    assert manifests.job_fingerprint(job) == manifests.job_fingerprint(reversed_keys(job))


def test_fingerprint_changes_with_any_nested_value() -> None:
    job = samples.job(SLEEPER)
    changed = copy.deepcopy(job)
    changed["execute"]["timeout"]["grace_period"] = 2

    assert manifests.job_fingerprint(job) != manifests.job_fingerprint(changed)


def test_fingerprint_of_typed_and_stored_forms_agree() -> None:
    typed = samples.job(HELLO)
    typed["interval"] = {"start": datetime(2026, 1, 1, tzinfo=UTC)}
    typed["triggers"] = ("schedule:0 * * * *",)
    stored = manifests.load_yaml(manifests.dump_yaml({"jobs": [typed]}))["jobs"][0]

    assert manifests.job_fingerprint(typed) == manifests.job_fingerprint(stored)
    assert len(manifests.job_fingerprint(typed)) == 64


# JSON Schema ----------------------------------------------------------------------------------
def test_generated_manifest_matches_the_schema() -> None:
    assert manifests.schema_errors(full_manifest()) == []
    manifests.validate_schema(full_manifest())


def test_schema_allows_volatile_and_unknown_top_level_fields() -> None:
    m = manifests.to_jsonable(as_generated(full_manifest()))
    m["future_field"] = {"x": 1}

    assert manifests.schema_errors(m) == []


def test_schema_errors_name_the_path_of_each_problem() -> None:
    m = samples.manifest(HELLO, SLEEPER)
    m["jobs"][1]["execute"]["concurrency"] = 0
    m["jobs"][0]["expose"]["colour"] = "red"

    errors = manifests.schema_errors(m)

    assert errors == [
        "manifest.jobs[0].expose: Additional properties are not allowed ('colour' was unexpected)",
        "manifest.jobs[1].execute.concurrency: 0 is less than the minimum of 1",
    ]


def test_validate_schema_raises_one_line_with_every_problem() -> None:
    m = samples.manifest(HELLO)
    m["engine_version"] = 3
    del m["jobs"][0]["triggers"]

    with pytest.raises(InvalidInput) as err:
        manifests.validate_schema(m)

    message = err.value.message
    assert "\n" not in message
    assert message.startswith("manifest does not match schemas/manifest.schema.json: ")
    assert "manifest.engine_version: 2 was expected" in message
    assert "manifest.jobs[0]: 'triggers' is a required property" in message


# validate: dlt's validator, then the schema ---------------------------------------------------
def test_a_generated_manifest_is_valid_without_warnings() -> None:
    assert manifests.validate(full_manifest()) == []


def test_validate_returns_dlt_warnings() -> None:
    m = samples.manifest(TINY_API)
    m["jobs"][0]["triggers"] = []
    del m["jobs"][0]["default_trigger"]

    assert manifests.validate(m) == [f"interactive job '{TINY_API}' has no http trigger"]


def test_validate_does_not_need_the_volatile_created_at() -> None:
    m = full_manifest()
    assert "created_at" not in m

    manifests.validate(m)

    assert "created_at" not in m


def invalid(m: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as err:
        manifests.validate(m)
    message = err.value.message
    assert "\n" not in message, message
    assert message.startswith("invalid manifest: ")
    return message


def test_validate_rejects_a_follow_up_to_an_unknown_job() -> None:
    m = samples.manifest(HELLO, AFTER_HELLO)
    m["jobs"][1]["triggers"] = ["job.success:jobs.__deployment__.helo"]

    message = invalid(m)

    assert AFTER_HELLO in message
    assert "unknown jobs" in message
    assert "jobs.__deployment__.helo" in message


def test_validate_rejects_a_follow_up_whose_target_was_left_out() -> None:
    assert "unknown jobs" in invalid(samples.manifest(AFTER_HELLO))


def test_validate_rejects_duplicate_job_refs() -> None:
    m = samples.manifest(HELLO, SLEEPER)
    m["jobs"].append(samples.job(HELLO))

    assert f"duplicate job_ref: '{HELLO}'" in invalid(m)


@pytest.mark.parametrize(
    ("trigger", "problem"),
    [
        ("bogus:x", "unknown type 'bogus'"),
        ("schedule:every monday", "invalid cron expression"),
        ("http://example.com/hook", "not a full URL"),
    ],
)
def test_validate_rejects_invalid_triggers(trigger: str, problem: str) -> None:
    m = samples.manifest(HELLO)
    m["jobs"][0]["triggers"] = [trigger]

    message = invalid(m)

    assert f"Invalid trigger '{trigger}'" in message
    assert problem in message


def test_validate_rejects_an_unknown_key_in_a_job() -> None:
    m = samples.manifest(HELLO, SLEEPER)
    m["jobs"][1]["retries"] = 3

    message = invalid(m)

    assert "jobs[1]" in message
    assert "unexpected fields" in message
    assert "retries" in message


def test_validate_rejects_an_unknown_key_in_an_entry_point() -> None:
    m = samples.manifest(HELLO)
    m["jobs"][0]["entry_point"]["python"] = "3.12"

    message = invalid(m)

    assert "jobs[0]/entry_point" in message
    assert "python" in message


def test_validate_rejects_engine_version_1() -> None:
    m = samples.manifest(HELLO, SLEEPER)
    m["engine_version"] = 1
    for job in m["jobs"]:
        job["engine_version"] = 1

    message = invalid(m)

    assert "manifest.engine_version: 2 was expected" in message
    assert "manifest.jobs[0].engine_version: 2 was expected" in message
    assert "manifest.jobs[1].engine_version: 2 was expected" in message


def test_validate_rejects_jobs_of_another_engine_than_the_manifest() -> None:
    m = samples.manifest(HELLO)
    m["engine_version"] = 1

    assert f"job '{HELLO}' is written for engine 2, the manifest for engine 1" in invalid(m)


def test_validate_reports_schema_problems_dlt_lets_through() -> None:
    m = samples.manifest(HELLO)
    m["jobs"][0]["execute"]["concurrency"] = 0

    assert invalid(m) == (
        "invalid manifest: manifest.jobs[0].execute.concurrency: 0 is less than the minimum of 1"
    )


def test_validate_rejects_a_manifest_without_jobs() -> None:
    m = samples.manifest(HELLO)
    del m["jobs"]

    assert "jobs" in invalid(m)


def test_validate_rejects_a_reserved_job_name() -> None:
    m = samples.manifest(HELLO)
    m["jobs"][0]["job_ref"] = "jobs.__deployment__.py"

    assert "'py' is reserved" in invalid(m)
