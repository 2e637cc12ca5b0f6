"""The scheduler and the run lifecycle with a fake clock, a real SQLite database and a real repo."""

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.clock import FakeClock
from dockyard.controller import gitstore, manifests, workspaces
from dockyard.controller.lifecycle import Lifecycle, Request, RunStatus
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.runtime_config import Defaults
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.scheduling.loop import BATCH, Scheduler
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Schedule
from tests.integration.helpers import Committer
from tests.unit import samples

NAME = "sched"
LAUNCHER = "dlt._workspace.deployment.launchers.job"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def job(name: str, *triggers: str, **extra: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "engine_version": 2,
        "job_ref": f"jobs.s.{name}",
        "entry_point": {"module": "s", "function": name, "job_type": "batch", "launcher": LAUNCHER},
        "triggers": list(triggers),
        "execute": {"concurrency": 1},
        "expose": {"manual": True},
    }
    timed = [tr for tr in triggers if tr.split(":", 1)[0] in ("schedule", "every")]
    if timed:
        definition["default_trigger"] = timed[0]
    definition.update(extra)
    return definition


class NoHooks(workspaces.HookInstaller):
    def __init__(self) -> None:
        super().__init__(sys.executable, 0)

    def __call__(self, repo: Any) -> None:
        return None


@dataclass
class World:
    db: Database
    clock: FakeClock
    committer: Committer
    reconciler: Reconciler
    lifecycle: Lifecycle
    scheduler: Scheduler

    def deploy(self, *jobs: dict[str, Any]) -> None:
        manifest = {"engine_version": 2, "deployment_module": "__deployment__", "jobs": list(jobs)}
        manifests.validate(manifest)
        self.committer.commit(
            {
                gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
                gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
                "code/s.py": b"x = 1\n",
            }
        )
        self.reconciler.reconcile(NAME)

    def at(self, when: str) -> list[Run]:
        self.clock.set(t(when))
        return self.scheduler.tick(self.clock.now())

    def runs(self, name: str) -> list[Run]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(Run)
                    .join(Job, Job.id == Run.job_id)
                    .where(Job.job_ref == f"jobs.s.{name}")
                    .order_by(Run.number)
                )
            )

    def finish(self, run: Run, status: str = "completed") -> list[Run]:
        with self.db.session() as session:
            row = session.get(Run, run.id)
            assert row is not None
            return self.lifecycle.advance(session, row, RunStatus(status), self.clock.now())

    def trigger(self, name: str, refresh: bool = False) -> Run:
        with self.db.session() as session:
            ws = workspaces.get(session, NAME)
            row = session.scalar(sa.select(Job).where(Job.job_ref == f"jobs.s.{name}"))
            assert row is not None
            return self.lifecycle.create(
                session,
                ws,
                row,
                Request(f"manual:jobs.s.{name}", refresh=refresh, gated=False),
                self.clock.now(),
            )

    def schedule(self, name: str) -> list[Schedule]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(Schedule)
                    .join(Job, Job.id == Schedule.job_id)
                    .where(Job.job_ref == f"jobs.s.{name}")
                )
            )

    def job(self, name: str) -> Job:
        with self.db.session() as session:
            row = session.scalar(sa.select(Job).where(Job.job_ref == f"jobs.s.{name}"))
            assert row is not None
            return row


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[World]:
    repos = tmp_path / "repos"
    with db.session() as session:
        workspaces.create(session, repos, NAME, NoHooks())
    clock = FakeClock(t("2026-03-04T10:02:00"))
    lifecycle = Lifecycle(repos, Defaults(7200.0, 30.0))
    yield World(
        db,
        clock,
        Committer(gitstore.open_repo(workspaces.repo_path(repos, NAME))),
        Reconciler(db, repos, clock=clock),
        lifecycle,
        Scheduler(db, clock, lifecycle),
    )


def test_a_cron_tick_fires_exactly_once(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"))
    assert [s.next_fire_at for s in world.schedule("a")] == [t("2026-03-04T10:05:00")]
    assert world.at("2026-03-04T10:04:59") == []
    (run,) = world.at("2026-03-04T10:05:00.010")
    assert run.scheduled_for == t("2026-03-04T10:05:00") and run.status == "pending"
    assert run.trigger == "schedule:*/5 * * * *"
    assert (run.interval_start, run.interval_end) == (t("2026-03-04T10:00"), t("2026-03-04T10:05"))
    assert world.at("2026-03-04T10:05:00.500") == []
    assert world.at("2026-03-04T10:09:59") == []
    assert [s.next_fire_at for s in world.schedule("a")] == [t("2026-03-04T10:10:00")]


def test_two_schedulers_racing_for_a_tick_make_one_run(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"))
    other = Scheduler(world.db, world.clock, world.lifecycle)
    world.clock.set(t("2026-03-04T10:05:01"))
    made = world.scheduler.tick(world.clock.now()) + other.tick(world.clock.now())
    assert len(made) == 1 and len(world.runs("a")) == 1


def test_a_burst_past_one_batch_fires_every_tick_once_with_two_schedulers(world: World) -> None:
    """More jobs due at one instant than one transaction fires (`BATCH`): two schedulers
    firing at once (threads; PostgreSQL skips the rows the other has locked) make exactly one
    run per job, and every schedule moves on."""
    count = BATCH * 2 + 17
    world.deploy(*(job(f"j{i:03d}", "schedule:*/5 * * * *") for i in range(count)))
    other = Scheduler(world.db, world.clock, world.lifecycle)
    world.clock.set(t("2026-03-04T10:05:00.002"))
    made: list[list[Run]] = [[], []]

    def fire(i: int, scheduler: Scheduler) -> None:
        made[i] = scheduler.tick(world.clock.now())

    threads = [
        threading.Thread(target=fire, args=(i, s)) for i, s in enumerate([world.scheduler, other])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made[0]) + len(made[1]) == count
    with world.db.session() as session:
        per_job = session.execute(sa.select(Run.job_id, sa.func.count()).group_by(Run.job_id)).all()
        due = session.scalar(
            sa.select(sa.func.count()).where(Schedule.next_fire_at <= world.clock.now())
        )
    assert len(per_job) == count and {n for _, n in per_job} == {1}
    assert due == 0


def test_a_due_row_moved_after_the_read_is_not_fired(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's ticks are claimed in one guarded executemany. When a due row moves between
    this scheduler's read and its write (a redeploy or another server moved it; on SQLite
    the read holds no lock), the batch is rolled back and claimed one row at a time: the
    moved row is not fired, the others are, once each."""
    world.deploy(*(job(f"j{i}", "schedule:*/5 * * * *") for i in range(3)))
    world.clock.set(t("2026-03-04T10:05:01"))
    read = schedules.due
    later = t("2026-03-04T10:30:00")
    moved = world.schedule("j1")[0].id

    def due_then_moved(*args: Any, **kwargs: Any) -> list[Any]:
        rows = read(*args, **kwargs)
        monkeypatch.setattr(schedules, "due", read)  # once
        with world.db.session() as session:  # another writer, committed before ours
            session.execute(
                sa.update(Schedule).where(Schedule.id == moved).values(next_fire_at=later)
            )
        return rows

    if not world.db.is_postgres:  # PostgreSQL: the read locked the rows, the writer waits
        monkeypatch.setattr(schedules, "due", due_then_moved)
    made = world.scheduler.tick(world.clock.now())
    expected_j1 = 0 if not world.db.is_postgres else 1
    assert [len(world.runs(f"j{i}")) for i in range(3)] == [1, expected_j1, 1]
    assert len(made) == 2 + expected_j1
    if not world.db.is_postgres:
        assert world.schedule("j1")[0].next_fire_at == later


def test_a_tick_that_already_has_its_run_leaves_the_rest_of_the_batch_alone(world: World) -> None:
    """The unique (job, trigger, tick) refuses a second run for one job's tick; the savepoint
    keeps the batch's other runs, and that tick stays consumed (no retry loop)."""
    world.deploy(job("a", "schedule:*/5 * * * *"), job("b", "schedule:*/5 * * * *"))
    tick = t("2026-03-04T10:05:00")
    with world.db.session() as session:
        ws = workspaces.get(session, NAME)
        a = session.scalar(sa.select(Job).where(Job.job_ref == "jobs.s.a"))
        assert a is not None
        request = Request("schedule:*/5 * * * *", scheduled_for=tick, gated=False)
        world.lifecycle.create(session, ws, a, request, tick)
    made = world.at("2026-03-04T10:05:01")
    assert [r.job_id for r in made] == [world.job("b").id]
    assert len(world.runs("a")) == 1 and len(world.runs("b")) == 1
    assert [s.next_fire_at for s in world.schedule("a")] == [t("2026-03-04T10:10:00")]
    assert world.at("2026-03-04T10:05:02") == []


def test_downtime_gives_one_run_for_the_latest_missed_tick(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"))
    (run,) = world.at("2026-03-04T13:07:30")  # down for three hours
    assert run.scheduled_for == t("2026-03-04T13:05:00")
    assert [s.next_fire_at for s in world.schedule("a")] == [t("2026-03-04T13:10:00")]


def test_every_fires_one_period_after_deploy_then_each_period(world: World) -> None:
    world.deploy(job("a", "every:10m"))
    assert world.at("2026-03-04T10:11:59") == []
    (first,) = world.at("2026-03-04T10:12:00")
    world.finish(first)
    (second,) = world.at("2026-03-04T10:52:30")  # missed three periods: one run
    assert second.scheduled_for == t("2026-03-04T10:52:00")


def test_a_past_once_fires_once_and_never_again(world: World) -> None:
    world.deploy(job("a", "once:2026-03-01T00:00:00+00:00"))
    (run,) = world.at("2026-03-04T10:02:01")
    assert run.scheduled_for == t("2026-03-01T00:00:00")  # due at deploy, ticked at its instant
    assert run.interval_start == run.interval_end == t("2026-03-01T00:00:00")
    world.finish(run)
    world.deploy(job("a", "once:2026-03-01T00:00:00+00:00"), job("b"))  # a redeploy
    assert world.at("2026-03-05T00:00:00") == []


def test_interval_windows_fold_missed_ticks_and_never_repeat(world: World) -> None:
    world.deploy(job("a", "schedule:0 * * * *", interval={"start": "2026-03-04T00:00:00+00:00"}))
    (first,) = world.at("2026-03-04T11:00:01")
    assert (first.interval_start, first.interval_end) == (
        t("2026-03-04T00:00"),
        t("2026-03-04T11:00"),
    )
    world.finish(first)
    (second,) = world.at("2026-03-04T15:20:00")  # four ticks missed: one wider window
    assert (second.interval_start, second.interval_end) == (
        t("2026-03-04T11:00"),
        t("2026-03-04T15:00"),
    )
    world.finish(second, "failed")
    (third,) = world.at("2026-03-04T16:00:02")  # the failed window is folded into the next
    assert (third.interval_start, third.interval_end) == (
        t("2026-03-04T11:00"),
        t("2026-03-04T16:00"),
    )


def test_interval_end_and_refresh(world: World) -> None:
    spec = {"start": "2026-03-04T08:00:00+00:00", "end": "2026-03-04T12:00:00+00:00"}
    world.deploy(job("a", "schedule:0 * * * *", interval=spec))
    (run,) = world.at("2026-03-04T11:00:01")
    world.finish(run)
    (run,) = world.at("2026-03-04T13:00:01")
    assert (run.interval_start, run.interval_end) == (t("2026-03-04T11:00"), t("2026-03-04T12:00"))
    world.finish(run)
    (done,) = world.at("2026-03-04T14:00:01")
    assert done.status == "skipped" and done.reason is not None
    assert "interval complete" in done.reason
    refreshed = world.trigger("a", refresh=True)  # back to interval.start, a new epoch
    assert refreshed.refresh and refreshed.status == "pending"
    assert (refreshed.interval_start, refreshed.interval_end) == (
        t("2026-03-04T08:00"),
        t("2026-03-04T12:00"),
    )


def test_concurrency_limit_skips_with_a_reason(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"))
    (first,) = world.at("2026-03-04T10:05:01")
    (second,) = world.at("2026-03-04T10:10:01")
    assert second.status == "skipped"
    assert second.reason == "concurrency limit 1 reached: run #1 still active"
    world.finish(first)
    (third,) = world.at("2026-03-04T10:15:01")
    assert third.status == "pending"


def test_a_batch_of_fires_reads_and_counts_together_and_decides_each_alike(
    world: World,
) -> None:
    """Fires due at one instant are read and counted together (`Lifecycle.prefetch`): each
    run's number continues its own job's counter, a job still running is skipped by its
    concurrency limit, and a job with two triggers on the instant gets two numbers."""
    world.deploy(
        job("a", "schedule:*/5 * * * *"),
        job("b", "schedule:*/5 * * * *"),
        job(
            "c",
            "schedule:*/5 * * * *",
            "once:2026-03-04T10:10:00+00:00",
            execute={"concurrency": 2},
        ),
    )
    world.trigger("b")  # b #1: manual, still pending at the tick
    made = world.at("2026-03-04T10:10:01")
    assert len(made) == 4
    assert [(r.number, r.status) for r in world.runs("a")] == [(1, "pending")]
    b_runs = world.runs("b")
    assert [(r.number, r.status) for r in b_runs] == [(1, "pending"), (2, "skipped")]
    assert b_runs[1].reason == "concurrency limit 1 reached: run #1 still active"
    assert [(r.number, r.status) for r in world.runs("c")] == [(1, "pending"), (2, "pending")]
    assert [world.job(name).runs_created for name in "abc"] == [1, 2, 2]
    (next_a,) = [r for r in world.at("2026-03-04T10:15:01") if r.job_id == world.job("a").id]
    assert (next_a.number, next_a.status) == (2, "skipped")


def test_freshness_gate_skips_until_the_upstream_has_run(world: World) -> None:
    up = job("up", "schedule:0 * * * *")
    down = job("down", "schedule:5 * * * *", freshness=["job.is_fresh:jobs.s.up"])
    world.deploy(up, down)
    (gated,) = world.at("2026-03-04T10:05:01")
    assert gated.status == "skipped"
    assert gated.reason == "upstream jobs.s.up: no completed run yet (or refreshed since)"
    (up_run,) = world.at("2026-03-04T11:00:01")
    world.finish(up_run)
    (fresh,) = world.at("2026-03-04T11:05:01")
    assert fresh.status == "pending"
    world.finish(fresh)
    made = world.at("2026-03-04T12:05:01")  # the upstream's 12:00 run has not completed
    assert len(made) == 2
    stale = world.runs("down")[-1]
    assert stale.status == "skipped"
    assert stale.reason == (
        "upstream jobs.s.up: last completed interval ends 2026-03-04 11:00"
        " UTC, needs ≥ 2026-03-04 12:00 UTC"
    )


def test_follow_ups_fire_once_per_upstream_end(world: World) -> None:
    world.deploy(job("up"), job("ok", "job.success:jobs.s.up"), job("ko", "job.fail:jobs.s.up"))
    run = world.trigger("up")
    (follow,) = world.finish(run)
    assert follow.trigger == "job.success:jobs.s.up" and follow.cause_run_id == run.id
    assert world.finish(run) == []  # replaying the end makes nothing new
    failed = world.trigger("up")
    (on_fail,) = world.finish(failed, "failed")
    assert on_fail.trigger == "job.fail:jobs.s.up"
    cancelled = world.trigger("up")
    assert world.finish(cancelled, "cancelled") == []


def test_redeploys_keep_schedule_state_and_a_cron_change_starts_fresh(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"), job("b"))
    (run,) = world.at("2026-03-04T10:05:01")
    world.finish(run)
    world.deploy(job("a", "schedule:*/5 * * * *"), job("c"))  # unrelated change
    assert [s.next_fire_at for s in world.schedule("a")] == [t("2026-03-04T10:10:00")]
    world.clock.set(t("2026-03-04T10:07:00"))
    world.deploy(job("a", "schedule:0 * * * *"), job("c"))  # the cron changes
    assert [(s.trigger, s.next_fire_at) for s in world.schedule("a")] == [
        ("schedule:0 * * * *", t("2026-03-04T11:00:00"))
    ]
    assert world.at("2026-03-04T10:10:01") == []  # the old cron is gone


def test_archived_jobs_stop_and_resume_at_their_next_tick(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"), job("b"))
    world.deploy(job("b"))
    assert world.at("2026-03-04T12:00:01") == []
    world.deploy(job("a", "schedule:*/5 * * * *"), job("b"))  # back, at 12:00:01
    assert world.at("2026-03-04T12:04:59") == []  # no burst for the archived hours
    (run,) = world.at("2026-03-04T12:05:00")
    assert run.scheduled_for == t("2026-03-04T12:05:00")


def set_paused(world: World, name: str, paused: bool) -> None:
    with world.db.session() as session:
        row = session.scalar(sa.select(Job).where(Job.job_ref == f"jobs.s.{name}"))
        assert row is not None
        if paused:
            schedules.pause(row, "ops", world.clock.now())
        else:
            schedules.resume(session, row, world.clock.now())


def test_a_paused_job_never_fires_and_a_redeploy_keeps_the_pause(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"), job("b"))
    set_paused(world, "a", True)
    assert world.at("2026-03-04T10:05:01") == []
    assert world.scheduler.seconds_to_next(world.clock.now()) == 300.0  # nothing due: sleeps
    world.deploy(job("a", "schedule:0 * * * *"), job("b"))  # triggers change in code
    assert world.job("a").paused_at is not None and world.job("a").paused_by == "ops"
    assert world.at("2026-03-04T11:00:01") == []
    assert world.trigger("a").status == "pending"  # a manual run still starts


def test_resuming_fires_from_the_next_tick_without_catching_up(world: World) -> None:
    world.deploy(job("a", "schedule:*/5 * * * *"))
    set_paused(world, "a", True)
    assert world.at("2026-03-04T11:02:00") == []
    set_paused(world, "a", False)
    assert world.job("a").paused_at is None
    assert world.at("2026-03-04T11:04:59") == []  # the paused hour is not run
    (run,) = world.at("2026-03-04T11:05:00")
    assert run.scheduled_for == t("2026-03-04T11:05:00")


def test_refresh_cascades_along_freshness_edges(world: World) -> None:
    world.deploy(
        job("up"),
        job("mid", freshness=["job.is_fresh:jobs.s.up"]),
        job("end", freshness=["job.is_fresh:jobs.s.mid"]),
        job("blocked", freshness=["job.is_fresh:jobs.s.up"], refresh_propagation="block"),
    )
    world.trigger("up", refresh=True)
    assert world.job("mid").refresh_pending and world.job("end").refresh_pending
    assert not world.job("blocked").refresh_pending
    assert world.trigger("mid").refresh and not world.job("mid").refresh_pending
    assert not world.trigger("blocked", refresh=True).refresh  # block never refreshes


def test_a_workspace_without_schedules_sleeps_long(world: World) -> None:
    world.deploy(job("b"))
    assert world.scheduler.seconds_to_next(world.clock.now()) == 300.0
    world.deploy(job("a", "schedule:*/5 * * * *"))
    assert world.scheduler.seconds_to_next(world.clock.now()) == 180.0


def test_no_run_waits_forever_in_pending(world: World, tmp_path: Path) -> None:
    from dockyard.controller.executors.fleet import Fleet
    from dockyard.controller.executors.local import LocalExecutor
    from dockyard.controller.prepare import Preparer
    from dockyard.controller.runner import Runner
    from dockyard.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    executor = LocalExecutor(settings.envs_dir)
    preparer = Preparer(settings, Fleet("local", {"local": lambda: executor}), b"k" * 32)
    runner = Runner(
        world.db, world.clock, executor, preparer, world.lifecycle, bounds=(600.0, 1800.0)
    )
    world.deploy(job("a"))
    stuck = world.trigger("a")  # nobody claims it (no runner loop in this test)
    world.clock.advance(599)
    runner._bound(world.clock.now())
    assert world.runs("a")[0].status == "pending"
    world.clock.advance(2)
    runner._bound(world.clock.now())
    (ended,) = world.runs("a")
    assert ended.id == stuck.id and ended.status == "failed"
    assert ended.reason == "stuck in pending for more than 600s"
