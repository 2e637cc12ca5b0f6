"""The lifecycle's table and its pure creation decision: no database, microseconds each."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.controller.lifecycle import decisions, rules, status
from dockyard.controller.lifecycle.decisions import Facts, Request
from dockyard.controller.lifecycle.status import MOVES, IllegalMove, RunStatus

S = RunStatus
NOW = datetime(2026, 3, 4, 10, 2, tzinfo=UTC)
LAUNCHER = "dlt._workspace.deployment.launchers.job"


@dataclass
class Job:
    definition: dict[str, Any]
    refresh_pending: bool = False


def job(*triggers: str, **extra: Any) -> Job:
    definition: dict[str, Any] = {
        "job_ref": "jobs.s.a",
        "entry_point": {"module": "s", "function": "a", "job_type": "batch", "launcher": LAUNCHER},
        "triggers": list(triggers),
        "execute": {"concurrency": 1},
    }
    timed = [t for t in triggers if t.split(":", 1)[0] in ("schedule", "every")]
    if timed:
        definition["default_trigger"] = timed[0]
    definition.update(extra)
    return Job(definition)


# the table ---------------------------------------------------------------------------------
def test_every_status_has_a_row_and_ended_ones_go_nowhere() -> None:
    assert set(MOVES) == {None, *RunStatus}
    for ended in status.TERMINAL:
        assert MOVES[ended] == frozenset()


def test_the_lists_partition_the_statuses() -> None:
    assert set(status.ACTIVE) | set(status.TERMINAL) == set(RunStatus)
    assert not set(status.ACTIVE) & set(status.TERMINAL)
    assert set(status.LAUNCHED) < set(status.ACTIVE)


def test_every_status_is_reachable_from_creation_and_every_active_one_can_end() -> None:
    def reachable(source: RunStatus, target: RunStatus) -> bool:
        try:
            return source is target or bool(status.path(source, target))
        except IllegalMove:
            return False

    for target in RunStatus:
        assert any(reachable(first, target) for first in MOVES[None]), target
    for active in status.ACTIVE:
        assert any(reachable(active, end) for end in status.TERMINAL), active
    assert not reachable(S.RUNNING, S.PENDING)  # a started process is never started again


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.PENDING, S.COMPLETED),
        (S.RUNNING, S.PENDING),
        (S.COMPLETED, S.RUNNING),
        (S.SKIPPED, S.PENDING),
    ],
)
def test_a_move_outside_the_table_is_refused_with_what_is_allowed(
    source: RunStatus, target: RunStatus
) -> None:
    with pytest.raises(IllegalMove, match=f"from {source.value} to {target.value}"):
        status.check([source], target)


def test_the_shortest_legal_path_walks_through_the_runner_s_steps() -> None:
    assert status.path(S.PENDING, S.COMPLETED) == [S.STARTING, S.COMPLETED]
    assert status.path(S.PENDING, S.CANCELLED) == [S.CANCELLED]
    assert status.path(S.RUNNING, S.CANCELLED) == [S.CANCELLING, S.CANCELLED]
    with pytest.raises(IllegalMove):
        status.path(S.FAILED, S.RUNNING)


def test_stored_strings_compare_equal_to_the_enum() -> None:
    stored: str = "running"
    assert status.parse("cancelling") is S.CANCELLING and stored == S.RUNNING
    with pytest.raises(ValueError):
        status.parse("paused")


# creation ----------------------------------------------------------------------------------
def test_a_plain_job_is_pending_with_its_natural_window() -> None:
    made = decisions.decide(job(), Request("manual:jobs.s.a"), Facts(), NOW)
    assert made.status is S.PENDING and made.reason is None
    assert made.window is not None and not made.record_window


def test_a_prepared_run_is_created_starting() -> None:
    made = decisions.decide(job(), Request("manual:", prepared=True), Facts(), NOW)
    assert made.status is S.STARTING


def test_concurrency_is_decided_from_the_active_runs_read() -> None:
    made = decisions.decide(job(), Request("manual:"), Facts(active_numbers=(4, 2)), NOW)
    assert made.status is S.SKIPPED
    assert made.reason == "concurrency limit 1 reached: run #2, #4 still active"
    unlimited = job(execute={"concurrency": None})
    assert (
        decisions.decide(unlimited, Request("manual:"), Facts(active_numbers=(1,)), NOW).status
        is S.PENDING
    )


def test_freshness_gates_timed_runs_but_not_a_person() -> None:
    gated = job("schedule:5 * * * *", freshness=["job.is_fresh:jobs.s.up"])
    upstream = {"jobs.s.up": job("schedule:0 * * * *").definition | {"job_ref": "jobs.s.up"}}
    facts = Facts(upstream=upstream, upstream_ends={"jobs.s.up": None})
    made = decisions.decide(gated, Request("schedule:5 * * * *"), facts, NOW)
    assert made.status is S.SKIPPED
    assert made.reason == "upstream jobs.s.up: no completed run yet (or refreshed since)"
    by_hand = Request("manual:jobs.s.a", gated=False)
    assert decisions.decide(gated, by_hand, facts, NOW).status is S.PENDING


INTERVAL = {"interval": {"start": "2026-03-04T08:00:00+00:00"}}


def test_an_interval_job_continues_from_the_ledger_and_records_its_window() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    done = datetime(2026, 3, 4, 9, tzinfo=UTC)
    made = decisions.decide(hourly, Request("schedule:0 * * * *"), Facts(completed_end=done), NOW)
    assert made.status is S.PENDING and made.record_window
    assert made.window is not None and (made.window.start, made.window.end) == (
        done,
        datetime(2026, 3, 4, 10, tzinfo=UTC),
    )


def test_a_window_being_processed_is_not_started_twice() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    done = datetime(2026, 3, 4, 9, tzinfo=UTC)
    facts = Facts(completed_end=done, taken_windows={done: 7})
    made = decisions.decide(hourly, Request("manual:jobs.s.a", gated=False), facts, NOW)
    assert made.status is S.SKIPPED
    assert made.reason == f"the window from {done.isoformat()} is being processed by run #7"


def test_a_requested_refresh_starts_a_new_epoch_and_cascades() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    done = datetime(2026, 3, 4, 9, tzinfo=UTC)
    facts = Facts(completed_end=done, taken_windows={done: 7})
    made = decisions.decide(hourly, Request("manual:", refresh=True, gated=False), facts, NOW)
    assert made.status is S.PENDING and made.refresh and made.new_epoch and made.cascade
    assert made.window is not None and made.window.start == datetime(2026, 3, 4, 8, tzinfo=UTC)


def test_a_pending_refresh_is_taken_by_the_next_run_without_cascading_again() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    hourly.refresh_pending = True
    made = decisions.decide(hourly, Request("schedule:0 * * * *"), Facts(), NOW)
    assert made.refresh and made.new_epoch and not made.cascade


# re-runs -----------------------------------------------------------------------------------
def rerun(window: tuple[datetime, datetime], **extra: Any) -> Request:
    return Request(
        "schedule:0 * * * *", gated=False, rerun_of="r-1", window=rules.Window(*window), **extra
    )


H8, H9, H10 = (datetime(2026, 3, 4, h, tzinfo=UTC) for h in (8, 9, 10))


def test_a_rerun_of_a_covered_window_runs_it_again_and_leaves_the_ledger() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    # everything up to 10:00 is done: an ordinary run now has nothing new to cover
    done = Facts(completed_end=H10)
    assert decisions.decide(hourly, Request("manual:", gated=False), done, NOW).status is S.SKIPPED
    made = decisions.decide(hourly, rerun((H8, H9)), done, NOW)
    assert made.status is S.PENDING and made.reason is None
    assert made.window == rules.Window(H8, H9)
    assert not made.record_window and not made.new_epoch and not made.cascade


def test_a_rerun_of_the_next_uncovered_window_goes_into_the_ledger() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    # its run failed (window removed): the ledger still ends at 09:00
    made = decisions.decide(hourly, rerun((H9, H10)), Facts(completed_end=H9), NOW)
    assert made.status is S.PENDING and made.record_window
    first = decisions.decide(hourly, rerun((H8, H9)), Facts(), NOW)  # nothing completed yet
    assert first.record_window


def test_a_rerun_of_a_window_being_processed_is_skipped_with_the_reason() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    facts = Facts(completed_end=H9, taken_windows={H9: 12})
    made = decisions.decide(hourly, rerun((H9, H10)), facts, NOW)
    assert made.status is S.SKIPPED
    assert made.reason == f"the window from {H9.isoformat()} is being processed by run #12"


def test_a_rerun_leaves_the_jobs_pending_refresh_to_its_next_run() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    hourly.refresh_pending = True
    made = decisions.decide(hourly, rerun((H8, H9)), Facts(completed_end=H10), NOW)
    assert not made.refresh and not made.new_epoch and not made.record_window


def test_a_rerun_of_a_refresh_refreshes_again_without_cascading_again() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    made = decisions.decide(hourly, rerun((H8, H9), refresh=True), Facts(completed_end=H10), NOW)
    assert made.refresh and made.new_epoch and made.record_window and not made.cascade


def test_a_rerun_still_respects_the_concurrency_limit() -> None:
    made = decisions.decide(job(), rerun((H8, H9)), Facts(active_numbers=(3,)), NOW)
    assert made.status is S.SKIPPED
    assert made.reason == "concurrency limit 1 reached: run #3 still active"


# ends --------------------------------------------------------------------------------------
def test_follow_up_triggers_come_from_completed_and_failed_only() -> None:
    assert decisions.follow_up_trigger("jobs.s.a", S.COMPLETED) == "job.success:jobs.s.a"
    assert decisions.follow_up_trigger("jobs.s.a", S.FAILED) == "job.fail:jobs.s.a"
    assert decisions.follow_up_trigger("jobs.s.a", S.CANCELLED) is None
