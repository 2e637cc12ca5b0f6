"""The words of a plan and of an outcome (`controller/plantext.py`, `webhooks/deploying.py`,
`webhooks/planning.py`): what `deploy --dry-run` prints, the ≤140-character summary of a
commit status, the Markdown of a check run or PR comment, the dashboard URL; and the one line
of a manifest import error with its file:line (`inspection.parse`)."""

import json
import subprocess
from typing import Any

import pytest

from dockyard.controller import inspection, planning, plantext
from dockyard.controller.gitsource import SourceDeploy, SourcePlan
from dockyard.errors import InvalidInput
from dockyard.webhooks import deploying
from dockyard.webhooks import planning as pr_planning
from dockyard.webhooks.processing import LinkTarget, PullRequest

NIGHTLY = "jobs.__deployment__.nightly"
FAILS = "jobs.__deployment__.fails"
GONE = "jobs.__deployment__.gone"
HELLO = "jobs.__deployment__.hello"
BASE = "https://dockyard.example.com"
SRC, WS_OLD, WS_NEW = "a" * 40, "b" * 40, "c" * 40
LINK = LinkTarget("yard", "acme/pipelines", "main", "", BASE, "token", lambda: "t", None, 1)


def _job(ref: str, *triggers: str) -> dict[str, Any]:
    return {"job_ref": ref, "triggers": list(triggers)}


PLAN = planning.Plan(
    (
        planning.JobChange(NIGHTLY, "added", _job(NIGHTLY, "schedule:30 7 * * *")),
        planning.JobChange(FAILS, "updated", _job(FAILS, "schedule:0 6 * * *"), ("triggers",)),
        planning.JobChange(HELLO, "unchanged", _job(HELLO)),
        planning.JobChange(GONE, "archived", None),
    )
)
OLD = {"jobs": [_job(FAILS), _job(HELLO), _job(GONE, "every:5m")]}
SCHEDULES: list[dict[str, Any]] = [
    {
        "job_ref": NIGHTLY,
        "old_triggers": [],
        "new_triggers": ["schedule:30 7 * * *"],
        "next_fire_at": {"schedule:30 7 * * *": "2026-12-04T07:30:00+00:00"},
        "next_window": None,
    },
    {
        "job_ref": FAILS,
        "old_triggers": [],
        "new_triggers": ["schedule:0 6 * * *"],
        "next_fire_at": {"schedule:0 6 * * *": "2026-12-04T06:00:00+00:00"},
        "next_window": ["2026-12-03T06:00:00+00:00", "2026-12-04T06:00:00+00:00"],
    },
    *plantext.archived_schedules(PLAN, OLD),
]


def test_the_jobs_to_preview_and_the_archived_schedules() -> None:
    assert [j["job_ref"] for j in plantext.to_preview(PLAN, OLD)] == [NIGHTLY, FAILS]
    assert plantext.archived_schedules(PLAN, OLD) == [
        {
            "job_ref": GONE,
            "old_triggers": ["every:5m"],
            "new_triggers": [],
            "next_fire_at": {},
            "next_window": None,
        }
    ]


def test_the_lines_deploy_dry_run_prints() -> None:
    assert plantext.lines(PLAN, SCHEDULES) == [
        f"  added     {NIGHTLY}",
        f"  updated   {FAILS}",
        f"  archived  {GONE}",
        f"  schedule  {NIGHTLY}: none -> schedule:30 7 * * *; next 2026-12-04 07:30:00 UTC",
        f"  schedule  {FAILS}: none -> schedule:0 6 * * *; next 2026-12-04 06:00:00 UTC",
        f"  window    {FAILS}: next run covers [2026-12-03 06:00:00, 2026-12-04 06:00:00) UTC",
        f"  schedule  {GONE}: every:5m -> none (stops firing)",
        "  unchanged 1 job(s)",
    ]


def test_the_summary_names_the_changes_and_the_next_runs_soonest_first() -> None:
    assert plantext.summary(PLAN, SCHEDULES) == (
        "1 added, 1 updated, 1 archived; next runs fails 2026-12-04 06:00 UTC,"
        " nightly 2026-12-04 07:30 UTC"
    )
    assert plantext.summary(PLAN, SCHEDULES[:1]) == (
        "1 added, 1 updated, 1 archived; next run nightly 2026-12-04 07:30 UTC"
    )
    assert plantext.summary(planning.Plan(), []) == "no job changes"


def test_a_summary_of_many_next_runs_stays_within_140_characters() -> None:
    many = [
        {
            "job_ref": f"jobs.__deployment__.job_with_a_long_name_{i:02}",
            "next_fire_at": {"schedule:0 * * * *": f"2026-12-04T{i:02}:00:00+00:00"},
        }
        for i in range(20)
    ]

    text = plantext.summary(PLAN, many)

    assert len(text) <= plantext.SUMMARY_MAX
    assert text.startswith("1 added, 1 updated, 1 archived; next runs job_with_a_long_name_00 ")
    assert text.endswith(" more") and "+19 more" in text, text


def test_the_details_hold_the_dry_run_lines_the_next_runs_and_the_link() -> None:
    text = plantext.details("Plan", PLAN, SCHEDULES, f"{BASE}/ui/w/yard/deployments", ["a note"])

    assert text.startswith("### Plan\n\n**1 added, 1 updated, 1 archived**\n\n```\n")
    assert "\n".join(plantext.lines(PLAN, SCHEDULES)) in text
    assert "| `fails` | 2026-12-04 06:00:00 |\n| `nightly` | 2026-12-04 07:30:00 |" in text
    assert "\n\na note\n" in text
    assert text.endswith(f"[Deployments on dockyard]({BASE}/ui/w/yard/deployments)\n")


def test_a_failure_is_one_line_that_cannot_break_out_of_its_block() -> None:
    text = plantext.failure("Refused", "```\n@everyone\nfile.py:3: NameError")

    assert "\n```\n@everyone file.py:3: NameError\n```\n" in text
    assert "jobs keep running the deployed version" in text


def test_a_deploy_outcome_says_what_was_deployed_and_links_the_diff() -> None:
    done = SourceDeploy("deployed", WS_NEW, SRC, "x", "y", WS_OLD, PLAN, tuple(SCHEDULES[:1]))

    said = deploying.outcome(done, LINK, BASE)

    summary = "1 added, 1 updated, 1 archived; next run nightly 2026-12-04 07:30 UTC"
    assert said.ok and said.head == SRC and said.summary == summary
    assert said.message == f"deployed {SRC[:12]} as {WS_NEW[:12]}: {summary}"
    assert said.url == f"{BASE}/ui/w/yard/deployments?old={WS_OLD}&new={WS_NEW}#diff"
    assert said.details.startswith(f"### Deployed acme/pipelines@{SRC[:12]} to yard as ")


def test_a_refused_deploy_says_why_in_every_form() -> None:
    reason = (
        ".dlt/prod.secrets.toml: sources.api.api_key is in clear text; a repository may hold"
        " only sealed values: run `dockyard secrets seal .dlt/prod.secrets.toml -w yard` and"
        " commit the result"
    )

    said = deploying.outcome(SourceDeploy("failed", WS_OLD, SRC, "", reason), LINK, BASE)

    assert not said.ok and said.message == reason and said.head is None
    assert len(said.summary) <= 140 and said.summary.startswith(".dlt/prod.secrets.toml: sources")
    assert reason in said.details and said.url == f"{BASE}/ui/w/yard/deployments"


def test_a_pull_request_plan_outcome() -> None:
    done = SourcePlan("planned", SRC, WS_OLD, "", PLAN, tuple(SCHEDULES), ("code",))

    said = pr_planning.outcome(done, LINK, PullRequest(7, SRC), BASE)

    assert said.ok and said.head == SRC
    assert said.message == f"plan for #7 at {SRC[:12]}: {plantext.summary(PLAN, SCHEDULES)}"
    assert said.details.startswith(f"### Merging #7 ({SRC[:12]}) would deploy to yard\n")
    assert "dry run: would change code" in said.details
    assert f"Planned against the deployed version {WS_OLD[:12]}." in said.details


def test_a_refused_pull_request_says_it_is_a_plan() -> None:
    reason = "generating the manifest failed: helper.py:2: NameError: name 'x' is not defined"
    done = SourcePlan("failed", SRC, WS_OLD, reason)

    said = pr_planning.outcome(done, LINK, PullRequest(7, SRC), BASE)

    assert not said.ok and said.summary == reason
    assert said.message == f"#7 {SRC[:12]} cannot be deployed: {reason}"
    assert reason in said.details and "Nothing was deployed: this is a plan" in said.details


def _shim_answer(worker: dict[str, str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.CompletedProcess([], 1, json.dumps({"worker": worker}), "")


def test_an_import_error_names_its_file_and_line() -> None:
    worker = {"error": "name 'x' is not defined", "error_type": "NameError", "where": "a/b.py:3"}

    with pytest.raises(InvalidInput) as caught:
        inspection.parse(_shim_answer(worker))

    assert caught.value.message == (
        "generating the manifest failed: a/b.py:3: NameError: name 'x' is not defined"
    )


def test_a_syntax_error_keeps_its_own_words() -> None:
    worker = {"error": "'(' was never closed (helper.py, line 1)", "error_type": "SyntaxError"}

    with pytest.raises(InvalidInput) as caught:
        inspection.parse(_shim_answer(worker))

    assert caught.value.message == (
        "generating the manifest failed: SyntaxError: '(' was never closed (helper.py, line 1)"
    )
