"""The scheduler: fires timed triggers exactly once per tick.

It sleeps until the earliest due time and is woken early by deploys (the lifecycle's
`Deployed` event) and by schedule changes (pause, resume); there is no polling interval.
Ticks due together are fired in batches, one transaction per batch (a burst of 500 jobs on
one minute is a few commits, not 500): for each, a guarded UPDATE moves the trigger's next
fire time (only one scheduler can claim a tick) and the run row is inserted through the
lifecycle with a unique (job, trigger, tick), so a crash at any point leaves either no trace
of the batch's ticks (they fire after the restart) or exactly one run for each.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller.lifecycle import (
    Batch,
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
from dockyard.errors import Conflict

log = logging.getLogger(__name__)
MAX_SLEEP_S = 300.0  # a safety net only: wake-ups come from the due time and from events
BATCH = 500  # due triggers fired in one transaction (a burst of 500: one commit, about 0.1 s)


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
        """Fire every trigger due at `now`, in batches; returns the runs made (pending or
        skipped)."""
        made: list[Run] = []
        while True:
            try:
                seen, fired = self._fire_batch(now)
            except _Raced:  # rolled back: the same batch, claimed one tick at a time
                seen, fired = self._fire_batch(now, together=False)
            made.extend(fired)
            if seen < BATCH or not fired:
                break  # all due rows taken, or a whole batch fired nothing: never spin
        return made

    def _fire_batch(self, now: datetime, together: bool = True) -> tuple[int, list[Run]]:
        """Up to `BATCH` due triggers fired in one transaction: each tick claimed by its
        guarded update and its run inserted under a savepoint (the unique (job, trigger,
        tick) refuses a second run). Returns how many due rows were looked at and the runs
        made. Rows another server is firing now are skipped, not waited for (PostgreSQL)."""
        fired: list[tuple[Run, Schedule, Job, ticks.Fire, Warm | None]] = []
        with self.db.session() as session:
            due = schedules.due(session, now, limit=BATCH, skip_locked=True)
            claimed = self._claim_ticks(session, due, now, together)
            if claimed:
                crashpoints.reached("tick_claimed")  # claimed, not committed
            have_runs = _ticks_with_runs(session, claimed)
            todo = [c for c in claimed if (c[1].id, c[0].trigger, c[2].tick) not in have_runs]
            spaces = _workspaces(session, {job.workspace_id for _, job, _ in todo})
            batch = self.lifecycle.prefetch(session, _once_each(todo, spaces))
            for schedule, job, fire in todo:
                ws = spaces[job.workspace_id]
                made = self._create(session, ws, job, schedule, fire, now, batch)
                if made is not None:
                    fired.append((made[0], schedule, job, fire, made[1]))
        if fired:
            crashpoints.reached("run_row_written")  # committed, not yet started
        for run, schedule, job, fire, warm in fired:
            self._after_commit(run, warm)
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
        return len(due), [run for run, *_ in fired]

    def _claim_ticks(
        self, session: Session, due: list[tuple[Schedule, Job]], now: datetime, together: bool
    ) -> list[tuple[Schedule, Job, ticks.Fire]]:
        """The due rows whose tick this transaction claims: the guarded update moves the
        next fire time only if it is still the one read (one scheduler per tick). `together`:
        one executemany for the batch; should another scheduler have moved any of them
        since they were read (rows it claimed cannot be told from ours then), `_Raced` rolls
        the whole batch back and it is claimed again one row at a time."""
        found = []
        for schedule, job in due:
            expected = schedule.next_fire_at
            fire = ticks.due(schedule.trigger, schedule.timezone, expected, now)
            if fire is not None:
                found.append((schedule, job, fire, expected))
        if not found:
            return []
        guarded = (
            update(Schedule)
            .where(Schedule.id == bindparam("sid"), Schedule.next_fire_at == bindparam("seen"))
            .values(next_fire_at=bindparam("next_at"), last_tick=bindparam("tick"))
            .execution_options(synchronize_session=False)
        )
        if together:
            params = [
                {"sid": s.id, "seen": seen, "next_at": f.next_fire_at, "tick": f.tick}
                for s, _, f, seen in found
            ]
            moved = session.connection().execute(guarded, params).rowcount
            if moved != len(found):
                raise _Raced()
            return [(schedule, job, fire) for schedule, job, fire, _ in found]
        claimed = []
        for schedule, job, fire, seen in found:
            one = {"sid": schedule.id, "seen": seen, "next_at": fire.next_fire_at}
            if session.connection().execute(guarded, {**one, "tick": fire.tick}).rowcount:
                claimed.append((schedule, job, fire))
        return claimed

    def _create(
        self,
        session: Session,
        ws: Workspace,
        job: Job,
        schedule: Schedule,
        fire: ticks.Fire,
        now: datetime,
        batch: Batch | None = None,
    ) -> tuple[Run, Warm | None] | None:
        """The tick's run; a job that cannot run now (`Conflict`, raised before any write)
        leaves the rest of the batch alone, its tick consumed. No savepoint per run: a tick
        that has its run already was left out before (`_ticks_with_runs`); should the unique
        (job, trigger, tick) still refuse one, the whole batch rolls back and fires again."""
        warm = self.prewarmer.take(job, ws, schedule.trigger) if self.prewarmer else None
        request = Request(
            schedule.trigger,
            scheduled_for=fire.tick,
            run_id=warm.identity.run_id if warm else None,
            prepared=warm is not None,
            triggered_by="scheduler",  # prepared ahead (prewarm) or not
        )
        try:
            return self.lifecycle.create(session, ws, job, request, now, batch), warm
        except Conflict as exc:
            if warm is not None:
                self._discard(warm)
            log.warning(
                "tick not fired",
                extra={"action": "fire", "job_ref": job.job_ref, "error": exc.message},
            )
            return None
        except BaseException:
            if warm is not None:
                self._discard(warm)
            raise

    def _after_commit(self, run: Run, warm: Warm | None) -> None:
        """A prepared run's held process gets its launch arguments (or is discarded)."""
        if warm is None:
            return
        if run.status == RunStatus.STARTING and self.release is not None:
            self.release(run.id, warm)
            assert self.prewarmer is not None
            self.prewarmer.forget(warm)  # it became a real run
        else:
            self._discard(warm)


class _Raced(Exception):
    """Another scheduler moved a due row between this one's read and its write."""


def _workspaces(session: Session, ids: set[int]) -> dict[int, Workspace]:
    if not ids:
        return {}
    return {ws.id: ws for ws in session.scalars(select(Workspace).where(Workspace.id.in_(ids)))}


def _once_each(
    todo: list[tuple[Schedule, Job, ticks.Fire]], spaces: dict[int, Workspace]
) -> list[Job]:
    """The jobs that fire once in this batch and can run: read and counted together (a job
    with two triggers on the same instant, or one that cannot run, goes one at a time)."""
    counted: dict[int, int] = {}
    for _, job, _ in todo:
        counted[job.id] = counted.get(job.id, 0) + 1
    found = []
    for _, job, _ in todo:
        if counted[job.id] != 1:
            continue
        try:
            Lifecycle.check_creatable(spaces[job.workspace_id], job)
        except Conflict:
            continue
        found.append(job)
    return found


def _ticks_with_runs(
    session: Session, claimed: list[tuple[Schedule, Job, ticks.Fire]]
) -> set[tuple[int, str, datetime]]:
    """The (job, trigger, tick) among `claimed` that have a run already, in one query."""
    if not claimed:
        return set()
    wanted = {(job.id, schedule.trigger, fire.tick) for schedule, job, fire in claimed}
    rows = session.execute(
        select(Run.job_id, Run.trigger, Run.scheduled_for).where(
            Run.job_id.in_({job_id for job_id, _, _ in wanted}),
            Run.scheduled_for.in_({tick for _, _, tick in wanted}),
        )
    )
    return {(j, t, at) for j, t, at in rows if at is not None and (j, t, at) in wanted}
