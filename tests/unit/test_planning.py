"""`planning.plan`: the diff by job ref that both `deploy --dry-run` and the reconciler show."""

import copy
from collections.abc import Iterable

from dockyard.controller import planning
from tests.unit import samples
from tests.unit.samples import AFTER_HELLO, DASHBOARD, HELLO, SLEEPER, TINY_API


def kinds(plan: planning.Plan) -> dict[str, str]:
    return {c.job_ref: c.kind for c in plan.changes}


def with_jobs(jobs: Iterable[dict[str, object]]) -> planning.Manifest:
    m = samples.manifest()
    m["jobs"] = list(jobs)
    return m


def test_first_deploy_adds_every_job_in_manifest_order() -> None:
    new = samples.manifest(HELLO, AFTER_HELLO, DASHBOARD)

    plan = planning.plan(None, new)

    assert [(c.job_ref, c.kind) for c in plan.changes] == [
        (HELLO, "added"),
        (AFTER_HELLO, "added"),
        (DASHBOARD, "added"),
    ]
    assert plan.changes[0].new == samples.job(HELLO)
    assert plan.summary() == "3 added"
    assert not plan.is_noop


def test_identical_manifests_are_a_noop() -> None:
    plan = planning.plan(samples.manifest(HELLO, SLEEPER), samples.manifest(HELLO, SLEEPER))

    assert kinds(plan) == {HELLO: "unchanged", SLEEPER: "unchanged"}
    assert plan.is_noop
    assert plan.summary() == "no job changes"


def test_key_order_inside_a_job_is_not_a_change() -> None:
    old = samples.manifest(HELLO)
    reordered = {k: old["jobs"][0][k] for k in reversed(list(old["jobs"][0]))}
    reordered["entry_point"] = dict(reversed(list(reordered["entry_point"].items())))

    plan = planning.plan(old, with_jobs([reordered]))

    assert kinds(plan) == {HELLO: "unchanged"}


def test_job_order_in_the_manifest_is_not_a_change() -> None:
    plan = planning.plan(samples.manifest(HELLO, SLEEPER), samples.manifest(SLEEPER, HELLO))

    assert plan.is_noop


def test_all_four_kinds_and_the_summary() -> None:
    old = samples.manifest(HELLO, AFTER_HELLO, SLEEPER)
    new = samples.manifest(HELLO, SLEEPER, TINY_API, DASHBOARD)
    new["jobs"][1]["execute"]["timeout"] = {"timeout": 30, "grace_period": 5}

    plan = planning.plan(old, new)

    assert kinds(plan) == {
        HELLO: "unchanged",
        SLEEPER: "updated",
        TINY_API: "added",
        DASHBOARD: "added",
        AFTER_HELLO: "archived",
    }
    assert plan.summary() == "2 added, 1 updated, 1 archived"
    assert plan.as_dict() == {
        "added": [TINY_API, DASHBOARD],
        "updated": [SLEEPER],
        "unchanged": [HELLO],
        "archived": [AFTER_HELLO],
    }


def test_archived_changes_carry_no_definition_and_come_last() -> None:
    plan = planning.plan(samples.manifest(HELLO, SLEEPER), samples.manifest(TINY_API))

    assert [c.kind for c in plan.changes] == ["added", "archived", "archived"]
    assert [c.new for c in plan.changes[1:]] == [None, None]
    assert plan.refs("archived") == [HELLO, SLEEPER]


def test_an_empty_new_manifest_archives_everything() -> None:
    plan = planning.plan(samples.manifest(HELLO, SLEEPER), samples.manifest())

    assert plan.as_dict()["archived"] == [HELLO, SLEEPER]
    assert plan.summary() == "2 archived"


def test_changed_fields_name_the_top_level_keys_that_differ() -> None:
    old = samples.manifest(AFTER_HELLO)
    new = copy.deepcopy(old)
    job = new["jobs"][0]
    job["triggers"] = [f"job.fail:{HELLO}"]
    job["expose"]["tags"] = ["quick", "nightly"]
    job["default_trigger"] = f"job.fail:{HELLO}"  # a key the old definition did not have

    (change,) = planning.plan(old, new).changes

    assert change.kind == "updated"
    assert change.changed_fields == ("default_trigger", "expose", "triggers")
    assert change.new == job


def test_a_removed_key_is_a_changed_field() -> None:
    old = samples.manifest(HELLO)
    new = copy.deepcopy(old)
    del new["jobs"][0]["description"]

    (change,) = planning.plan(old, new).changes

    assert change.changed_fields == ("description",)


def test_unchanged_and_added_jobs_have_no_changed_fields() -> None:
    plan = planning.plan(samples.manifest(HELLO), samples.manifest(HELLO, SLEEPER))

    assert [c.changed_fields for c in plan.changes] == [(), ()]


def test_plan_does_not_modify_its_inputs() -> None:
    old, new = samples.manifest(HELLO, SLEEPER), samples.manifest(SLEEPER, TINY_API)
    old_copy, new_copy = copy.deepcopy(old), copy.deepcopy(new)

    planning.plan(old, new)

    assert (old, new) == (old_copy, new_copy)


def test_a_manifest_without_jobs_key_counts_as_no_jobs() -> None:
    assert planning.jobs_by_ref({"engine_version": 2}) == {}
    assert planning.jobs_by_ref(None) == {}
    assert planning.plan({}, samples.manifest(HELLO)).as_dict()["added"] == [HELLO]


def test_merge_ad_hoc_into_nothing_takes_the_ad_hoc_manifest() -> None:
    ad_hoc = samples.manifest(SLEEPER)
    ad_hoc["deployment_module"] = "adhoc"

    merged = planning.merge_ad_hoc(None, ad_hoc)

    assert merged == ad_hoc


def test_merge_ad_hoc_keeps_other_jobs_and_replaces_its_own() -> None:
    old = samples.manifest(HELLO, SLEEPER, DASHBOARD)
    ad_hoc = samples.manifest(SLEEPER, TINY_API)
    ad_hoc["deployment_module"] = "adhoc"
    ad_hoc["jobs"][0]["execute"] = {"concurrency": 2}

    merged = planning.merge_ad_hoc(old, ad_hoc)

    assert [j["job_ref"] for j in merged["jobs"]] == [HELLO, SLEEPER, DASHBOARD, TINY_API]
    assert merged["jobs"][1]["execute"] == {"concurrency": 2}
    # the workspace's own top-level fields win over the script's
    assert merged["deployment_module"] == "__deployment__"
    assert kinds(planning.plan(old, merged)) == {
        HELLO: "unchanged",
        SLEEPER: "updated",
        DASHBOARD: "unchanged",
        TINY_API: "added",
    }


def test_merge_ad_hoc_never_archives_and_leaves_old_untouched() -> None:
    old = samples.manifest(HELLO, SLEEPER)
    old_copy = copy.deepcopy(old)

    merged = planning.merge_ad_hoc(old, samples.manifest(TINY_API))

    assert planning.plan(old, merged).refs("archived") == []
    assert old == old_copy


def test_plans_are_frozen_values() -> None:
    a = planning.plan(samples.manifest(HELLO), samples.manifest(SLEEPER))
    b = planning.plan(samples.manifest(HELLO), samples.manifest(SLEEPER))

    assert a == b
    assert a.changes[0] == planning.JobChange(SLEEPER, "added", samples.job(SLEEPER))
