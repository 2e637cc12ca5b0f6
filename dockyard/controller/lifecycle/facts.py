"""The reads the lifecycle decides on: one call gathers what creating a run needs, and the
ledger questions the API and dashboard ask (how far an interval job got, whether its
freshness gate is open). Reads only: every write is in `writer`.
"""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.controller import dltadapter
from dockyard.controller.lifecycle import rules
from dockyard.controller.lifecycle.decisions import Facts, Request
from dockyard.controller.lifecycle.status import ACTIVE, RunStatus
from dockyard.controller.store.models import IntervalWindow, Job, Run, Workspace


def read(
    session: Session,
    ws: Workspace,
    job: Job,
    request: Request,
    active_numbers: tuple[int, ...] | None = None,
) -> Facts:
    """What `decisions.decide` needs for this job and request, and nothing it does not:
    the ledger only for interval jobs, the upstream only for gated freshness.
    `active_numbers`: already read for many jobs at once (`active_numbers`)."""
    job_def = job.definition
    interval = bool(job_def.get("interval"))
    upstream: dict[str, Job] = {}
    if request.gated and job_def.get("freshness"):
        upstream = _upstream(session, ws, job_def)
    if active_numbers is None:
        active_numbers = tuple(
            session.scalars(select(Run.number).where(Run.job_id == job.id, Run.status.in_(ACTIVE)))
        )
    return Facts(
        active_numbers=active_numbers,
        completed_end=completed_end(session, job),
        taken_windows=_running_windows(session, job) if interval else {},
        upstream={ref: up.definition for ref, up in upstream.items()},
        upstream_ends={ref: _last_completed_end(session, up) for ref, up in upstream.items()},
    )


def active_numbers(session: Session, job_ids: Collection[int]) -> dict[int, tuple[int, ...]]:
    """The numbers of each job's pending/starting/running runs, in one query."""
    found: dict[int, list[int]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        rows = session.execute(
            select(Run.job_id, Run.number).where(
                Run.job_id.in_(list(job_ids)), Run.status.in_(ACTIVE)
            )
        )
        for job_id, number in rows:
            found[job_id].append(number)
    return {job_id: tuple(numbers) for job_id, numbers in found.items()}


def completed_end(session: Session, job: Job) -> datetime | None:
    """The interval ledger: where the job's last completed window (this epoch) ends."""
    if not job.definition.get("interval"):
        return None
    end: datetime | None = session.scalar(
        select(func.max(IntervalWindow.end)).where(
            IntervalWindow.job_id == job.id,
            IntervalWindow.epoch == job.interval_epoch,
            IntervalWindow.status == "completed",
        )
    )
    return end


def _running_windows(session: Session, job: Job) -> dict[datetime, int]:
    """Windows being processed now (start → run number). A completed window can never be
    the next one: the next starts where the last completed one ended."""
    rows = session.execute(
        select(IntervalWindow.start, Run.number)
        .join(Run, IntervalWindow.run_id == Run.id)
        .where(
            IntervalWindow.job_id == job.id,
            IntervalWindow.epoch == job.interval_epoch,
            IntervalWindow.status == "running",
        )
    )
    return {row[0]: row[1] for row in rows}


def _upstream(session: Session, ws: Workspace, job_def: dict[str, Any]) -> dict[str, Job]:
    refs = dltadapter.freshness_refs(job_def)
    return {
        j.job_ref: j
        for j in session.scalars(
            select(Job).where(
                Job.workspace_id == ws.id, Job.job_ref.in_(refs), Job.status == "active"
            )
        )
    }


def _last_completed_end(session: Session, job: Job) -> datetime | None:
    """The interval end of the job's last completed run since its last refresh reset."""
    query = select(func.max(Run.interval_end)).where(
        Run.job_id == job.id, Run.status == RunStatus.COMPLETED
    )
    if job.reset_at is not None:
        query = query.where(Run.finished_at > job.reset_at)
    end: datetime | None = session.scalar(query)
    return end


def freshness_reason(session: Session, ws: Workspace, job: Job, now: datetime) -> str | None:
    """Why the job's freshness gate is closed now (None: open, or no gate)."""
    if not job.definition.get("freshness"):
        return None
    upstream = _upstream(session, ws, job.definition)
    return rules.freshness_skip(
        job.definition,
        {r: u.definition for r, u in upstream.items()},
        {r: _last_completed_end(session, u) for r, u in upstream.items()},
        now,
    )


def interval_state(session: Session, job: Job, now: datetime) -> dict[str, Any] | None:
    """The declared range, how far the ledger got and the window a run now would cover."""
    declared = dltadapter.declared_range(job.definition)
    if declared is None:
        return None
    done = completed_end(session, job)
    trigger = str(job.definition.get("default_trigger") or "manual:")
    decision = rules.window(job.definition, trigger, now, done, job.refresh_pending)
    window = decision.window
    return {
        "start": declared[0].isoformat(),
        "end": declared[1].isoformat() if declared[1] else None,
        "completed_up_to": done.isoformat() if done else None,
        "next_window": [window.start.isoformat(), window.end.isoformat()] if window else None,
        "next_window_skip_reason": decision.skip_reason,
    }
