"""The alert outbox: rows written in the transaction that ends a run.

`record` is called by the lifecycle's writer (`Lifecycle.finish`) in the session that moves
the run to its end, so the alert exists exactly when the end does — committed together,
rolled back together — and the end never waits on a network call: the sending loop
(`delivery.Sender`) finds the row and sends it, after a restart too. A workspace without
channels costs one indexed read.
"""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.controller.alerts import kinds, messages
from dockyard.controller.store.models import AlertChannel, AlertDelivery, Job, Run, Workspace

OUTCOMES = ("completed", "failed")


def record(
    session: Session,
    run: Run,
    status: str,
    now: datetime,
    reason: str | None,
    lost: bool = False,
) -> list[AlertDelivery]:
    """The alerts `run`'s end to `status` makes, one pending row per channel that wants it."""
    if status not in OUTCOMES:
        return []
    channels = list(
        session.scalars(select(AlertChannel).where(AlertChannel.workspace_id == run.workspace_id))
    )
    if not channels:
        return []
    previous = _previous_outcome(session, run) if status == "completed" else None
    event = kinds.event_for(status, run.stop_reason, lost, previous)
    wanting = [c for c in channels if event is not None and event in c.events]
    if not wanting:
        return []
    message = _facts(session, run, str(event), status, reason, now)
    rows = [
        AlertDelivery(
            workspace_id=run.workspace_id,
            channel_id=channel.id,
            channel_name=channel.name,
            run_id=run.id,
            event=event,
            message=message,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for channel in wanting
    ]
    session.add_all(rows)
    return rows


def _previous_outcome(session: Session, run: Run) -> str | None:
    """The status of the job's last run before `run` (by number: creation order) that
    completed or failed; cancelled and skipped runs say nothing about the job's health."""
    return session.scalar(
        select(Run.status)
        .where(Run.job_id == run.job_id, Run.number < run.number, Run.status.in_(OUTCOMES))
        .order_by(Run.number.desc())
        .limit(1)
    )


def _facts(
    session: Session, run: Run, event: str, status: str, reason: str | None, now: datetime
) -> dict[str, object]:
    job = session.get(Job, run.job_id)
    ws = session.get(Workspace, run.workspace_id)
    assert job is not None and ws is not None
    details = {
        "id": run.id,
        "number": run.number,
        "status": status,
        "reason": reason,
        "trigger": run.trigger,
        "finished_at": now.isoformat(),
    }
    return messages.facts(event, ws.name, job.job_ref, details)
