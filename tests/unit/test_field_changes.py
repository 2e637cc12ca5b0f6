"""`plantext.field_changes`: old → new values of updated jobs, bounded, config by key names."""

from typing import Any

from dockyard.controller import planning, plantext


def job(**fields: Any) -> dict[str, Any]:
    return {"job_ref": "jobs.d.a", "triggers": [], **fields}


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, str]]:
    plan = planning.plan({"jobs": [old]}, {"jobs": [new]})
    return {c["field"]: c for c in plantext.field_changes(plan)["jobs.d.a"]}


def test_values_are_compact_json_cut_to_80_characters() -> None:
    found = changes(
        job(triggers=["schedule:0 3 * * *"], description="x" * 200),
        job(triggers=["schedule:30 4 * * *"], description="short"),
    )
    assert set(found) == {"triggers", "description"}
    assert found["triggers"] == {
        "field": "triggers",
        "old": '["schedule:0 3 * * *"]',
        "new": '["schedule:30 4 * * *"]',
    }
    old = found["description"]["old"]
    assert len(old) == 80 and old.endswith("…") and found["description"]["new"] == '"short"'


def test_config_fields_show_key_names_only_and_unset_is_none() -> None:
    schema = {"type": "object", "properties": {"api_key": {"default": "s3cr3t"}, "n": {}}}
    found = changes(job(config_keys=["a"]), job(inputs=schema, config_keys=["a", "token"]))
    assert found["inputs"] == {"field": "inputs", "old": "(none)", "new": '["api_key", "n"]'}
    assert "s3cr3t" not in str(found)
    assert found["config_keys"] == {"field": "config_keys", "old": '["a"]', "new": '["a", "token"]'}


def test_added_and_unchanged_jobs_have_no_field_changes() -> None:
    plan = planning.plan({"jobs": [job()]}, {"jobs": [job(), {**job(), "job_ref": "jobs.d.b"}]})
    assert plantext.field_changes(plan) == {}
