"""The scheduler: fires timed triggers exactly once per tick.

It sleeps until the earliest due time and is woken early by deploys (the lifecycle's
`Deployed` event) and by schedule changes (pause, resume); there is no polling interval.
Each fire is one transaction: a guarded UPDATE moves the trigger's next fire time (only one
scheduler can claim a tick) and the run row is inserted through the lifecycle with a unique
(job, trigger, tick), so a crash at any point leaves either no trace of the tick (it fires
after the restart) or exactly one run for it.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller.lifecycle import (
    Deployed,
    Lifecycle,
    Request,
    RunStatus,
    ScheduleChanged,
)
from dockyard.controller.loop import Loop
from dockyard.controller.prewarm import Prewarmer, Warm
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.scheduling import ticks
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Schedule, Workspace

log = logging.getLogger(__name__)
MAX_SLEEP_S = 300.0  # a safety net only: wake-ups come from the due time and from events


class Scheduler(Loop):
    name = "scheduler"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        lifecycle: Lifecycle,
        prewarmer: Prewarmer | None = None,
        release: Callable[[str, Warm], None] | None = None,
    ) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.lifecycle = lifecycle
        self.prewarmer = prewarmer if prewarmer is not None and prewarmer.enabled else None
        self.release = release
        lifecycle.events.subscribe(Deployed, lambda _event: self.wake())
        lifecycle.events.subscribe(ScheduleChanged, lambda _event: self.wake())

    def on_stop(self) -> None:
        if self.prewarmer is not None:
            self.prewarmer.stop()

    def _discard(self, warm: Warm) -> None:
        assert self.prewarmer is not None
        self.prewarmer.discard(warm)

    def step(self) -> float:
        self.tick(self.clock.now())
        if self.prewarmer is not None:
            self.prewarmer.prepare_due(self.clock.now())
        return self.seconds_to_next(self.clock.now())

    def seconds_to_next(self, now: datetime) -> float:
        with self.db.session() as session:
            at = schedules.next_due(session)
        if at is None:
            return MAX_SLEEP_S
        if self.prewarmer is not None and at - self.prewarmer.lead > now:
            at = at - self.prewarmer.lead  # wake early to prepare the run's process
        return min(MAX_SLEEP_S, max(0.0, (at - now).total_seconds()))

    def tick(self, now: datetime) -> list[Run]:
        """Fire every trigger due at `now`; returns the runs made (pending or skipped)."""
        made: list[Run] = []
        while True:
            with self.db.session() as session:
                batch = schedules.due(session, now)
                ids = [(s.id, s.next_fire_at) for s, _ in batch]
            if not ids:
                break
            before = len(made)
            for schedule_id, expected in ids:
                run = self._fire(schedule_id, expected, now)
                if run is not None:
                    made.append(run)
            if len(made) == before:
                break  # nothing fired in a whole pass: never spin on rows that stay due
        return made

    def _fire(self, schedule_id: int, expected: datetime | None, now: datetime) -> Run | None:
        with self.db.session() as session:
            # a schedule another server is firing now is skipped, not waited for (PostgreSQL;
            # nothing on SQLite); the guarded update below keeps the tick once either way
            schedule = session.scalar(
                select(Schedule).where(Schedule.id == schedule_id).with_for_update(skip_locked=True)
            )
            if schedule is None or schedule.next_fire_at != expected:
                return None
            fire = ticks.due(schedule.trigger, schedule.timezone, expected, now)
            if fire is None:
                return None
            claimed = session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id, Schedule.next_fire_at == expected)
                .values(next_fire_at=fire.next_fire_at, last_tick=fire.tick)
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return None
            crashpoints.reached("tick_claimed")  # claimed, not committed
            job = session.get(Job, schedule.job_id)
            assert job is not None
            ws = session.get(Workspace, job.workspace_id)
            assert ws is not None
            warm = self.prewarmer.take(job, ws, schedule.trigger) if self.prewarmer else None
            request = Request(
                schedule.trigger,
                scheduled_for=fire.tick,
                run_id=warm.identity.run_id if warm else None,
                prepared=warm is not None,
                triggered_by="scheduler",  # prepared ahead (prewarm) or not
            )
            try:
                with session.begin_nested():
                    run = self.lifecycle.create(session, ws, job, request, now)
            except IntegrityError:
                if warm is not None:
                    self._discard(warm)
                return None  # this tick already has its run
        crashpoints.reached("run_row_written")  # committed, not yet started
        if warm is not None:
            if run.status == RunStatus.STARTING and self.release is not None:
                self.release(run.id, warm)
                assert self.prewarmer is not None
                self.prewarmer.forget(warm)  # it became a real run
            else:
                self._discard(warm)
        log.info(
            "fired",
            extra={
                "action": "fire",
                "job_ref": job.job_ref,
                "trigger": schedule.trigger,
                "tick": fire.tick.isoformat(),
                "missed": fire.missed,
                "status": run.status,
            },
        )
        return run
