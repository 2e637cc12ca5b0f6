"""The `schedule` table: one row per timed trigger of a job, kept by job ref across
redeploys. Reconciliation calls `sync` for every job it adds, changes or archives.

A paused job (`job.paused_at`, set by a person in the dashboard or the API) keeps its rows
but is never due: pausing is an operational switch on top of the triggers its code declares,
and a redeploy neither clears it nor changes it. Resuming re-arms every timed trigger from
its next tick after now, so ticks missed while paused are not run."""

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dockyard.controller import dltadapter
from dockyard.controller.scheduling import ticks
from dockyard.controller.store.models import Job, Schedule


def sync(session: Session, jobs: list[tuple[Job, bool]], now: datetime) -> None:
    """Make the schedule rows of these jobs (each with whether it just came back from the
    archive) match their timed triggers.

    A trigger that stays keeps its next fire time (no re-run, no backfill); a new or changed
    trigger fires first at its next tick after `now`; a job that comes back from the archive
    resumes at its next tick too (a `once:` that already fired stays done). Rows of an
    archived job are kept but never due (the scheduler only looks at active jobs).
    """
    active = [(job, back) for job, back in jobs if job.status == "active"]
    wanted = {id(job): dltadapter.timed_triggers(job.definition) for job, _ in active}
    if not active:
        return
    session.flush()  # once, so that new jobs have their ids
    ids = [job.id for job, _ in active]
    rows: dict[int, dict[str, Schedule]] = {}
    for row in session.scalars(select(Schedule).where(Schedule.job_id.in_(ids))):
        rows.setdefault(row.job_id, {})[row.trigger] = row
    for job, reactivated in active:
        _sync_one(session, job, wanted[id(job)], rows.get(job.id, {}), now, reactivated)


def _sync_one(
    session: Session,
    job: Job,
    wanted: list[str],
    rows: dict[str, Schedule],
    now: datetime,
    reactivated: bool,
) -> None:
    tz = dltadapter.job_timezone(job.definition)
    stale = [t for t in rows if t not in wanted]
    if stale:
        session.execute(
            delete(Schedule).where(Schedule.job_id == job.id, Schedule.trigger.in_(stale))
        )
    for trigger in wanted:
        row = rows.get(trigger)
        if row is None:
            session.add(
                Schedule(
                    job_id=job.id,
                    trigger=trigger,
                    timezone=tz,
                    created_at=now,
                    next_fire_at=ticks.first_fire(trigger, tz, now),
                )
            )
        elif row.timezone != tz or reactivated:
            done = dltadapter.trigger_type(trigger) == "once" and row.last_tick is not None
            row.timezone = tz
            row.next_fire_at = None if done else ticks.first_fire(trigger, tz, now)


def due(
    session: Session, now: datetime, limit: int = 500, skip_locked: bool = False
) -> list[tuple[Schedule, Job]]:
    """The triggers due at `now`, earliest first. `skip_locked`: locked for this transaction,
    passing over rows another one holds (PostgreSQL; SQLite has one writer anyway)."""
    query = (
        select(Schedule, Job)
        .join(Job, Job.id == Schedule.job_id)
        .where(Job.status == "active", Job.paused_at.is_(None), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=Schedule)
    return [(s, j) for s, j in session.execute(query)]


def next_due(session: Session) -> datetime | None:
    at: datetime | None = session.scalar(
        select(func.min(Schedule.next_fire_at))
        .join(Job, Job.id == Schedule.job_id)
        .where(Job.status == "active", Job.paused_at.is_(None))
    )
    return at


def for_job(session: Session, job: Job) -> list[Schedule]:
    return list(
        session.scalars(
            select(Schedule).where(Schedule.job_id == job.id).order_by(Schedule.trigger)
        )
    )


def pause(job: Job, by: str, now: datetime) -> None:
    """Stop the job's timed triggers from firing (manual and event triggers still work)."""
    if job.paused_at is None:
        job.paused_at, job.paused_by = now, by


def resume(session: Session, job: Job, now: datetime) -> None:
    """Fire the timed triggers again from their next tick after `now` (no catch-up of the
    ticks missed while paused; a `once:` that already fired stays done)."""
    if job.paused_at is None:
        return
    job.paused_at, job.paused_by = None, None
    tz = dltadapter.job_timezone(job.definition)
    for row in for_job(session, job):
        done = dltadapter.trigger_type(row.trigger) == "once" and row.last_tick is not None
        row.next_fire_at = None if done else ticks.first_fire(row.trigger, tz, now)


def next_fire_by_job(session: Session, job_ids: list[int]) -> dict[int, datetime]:
    """The earliest next fire time of each job's timed triggers, in one query."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Schedule.job_id, func.min(Schedule.next_fire_at))
        .where(Schedule.job_id.in_(job_ids), Schedule.next_fire_at.is_not(None))
        .group_by(Schedule.job_id)
    )
    return {job_id: at for job_id, at in rows if at is not None}
