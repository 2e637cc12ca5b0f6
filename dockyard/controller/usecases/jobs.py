"""Jobs: list, show (definition, schedules, freshness, interval), pause and resume their timed
triggers, and preview what a deploy would do to their schedules (`deploy --dry-run`)."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from dockyard.clock import isoformat
from dockyard.controller import audit, dltadapter, runs, schedulepreview
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import ScheduleChanged, facts, rules
from dockyard.controller.runs import RunRow
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.scheduling import ticks
from dockyard.controller.store.models import Job, Run, Token, Workspace
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal
from dockyard.errors import NotFound

JobRow = Row[Any]  # a job's listed columns (`LISTED`), its definition read only when needed
LISTED = (
    Job.id,
    Job.job_ref,
    Job.job_type,
    Job.status,
    Job.fingerprint,
    Job.created_sha,
    Job.updated_sha,
    Job.paused_at,
    Job.paused_by,
)
# what a job's listing shows of its definition, by the definition's fingerprint (its hash:
# a redeploy that changes the definition changes it); bounded, oldest out first
_DESCRIBED: "OrderedDict[str, dict[str, Any]]" = OrderedDict()
_DESCRIBED_MAX = 10_000
_described_lock = threading.Lock()


def job_dict(job: Job | JobRow, last: Run | RunRow | None, next_fire: Any = None) -> dict[str, Any]:
    described = _described(job.fingerprint, lambda: job.definition)  # shared: copied here
    return {
        "job_ref": job.job_ref,
        "name": dltadapter.short_name(job.job_ref),
        "display_name": described["display_name"],
        "job_type": job.job_type,
        "triggers": list(described["triggers"]),
        "triggers_humanized": list(described["triggers_humanized"]),
        "default_trigger": described["default_trigger"],
        "tags": list(described["tags"]),
        "description": described["description"],
        "status": job.status,
        "created_sha": job.created_sha,
        "updated_sha": job.updated_sha,
        "last_run": runs.as_dict(last, job.job_ref) if last else None,
        "paused_at": isoformat(job.paused_at),
        "paused_by": job.paused_by,
        # a paused job's rows keep their tick, but it does not fire: no next run
        "next_fire_at": (
            isoformat(next_fire) if job.status == "active" and job.paused_at is None else None
        ),
    }


def _described(fingerprint: str, definition: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    with _described_lock:
        found = _DESCRIBED.get(fingerprint)
    return found if found is not None else _remember(fingerprint, definition())


def _remember(fingerprint: str, definition: dict[str, Any]) -> dict[str, Any]:
    made = _description(definition)
    with _described_lock:
        _DESCRIBED[fingerprint] = made
        while len(_DESCRIBED) > _DESCRIBED_MAX:
            _DESCRIBED.popitem(last=False)
    return made


def _description(definition: dict[str, Any]) -> dict[str, Any]:
    expose = definition.get("expose") or {}
    tags = expose.get("tags") or []
    triggers = list(definition.get("triggers") or [])
    return {
        "display_name": expose.get("display_name"),
        "triggers": triggers,
        "triggers_humanized": [dltadapter.humanize_trigger(t) for t in triggers],
        "default_trigger": definition.get("default_trigger"),
        "tags": [tags] if isinstance(tags, str) else list(tags),
        "description": definition.get("description"),
    }


def list_jobs(
    ctl: Controller,
    principal: Principal,
    name: str,
    include_archived: bool = True,
    selectors: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The jobs (those dlt's `selectors` pick, when given), each with its last run and next
    fire time: three reads whatever the number of jobs (a fourth for the definitions of
    jobs not listed since their last deploy). Plain rows, not ORM objects: a workspace of
    hundreds of jobs is listed often (the CLI, the dlthub client, a dashboard)."""
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        if selectors:
            picked: Sequence[Job | JobRow] = runs.filter_jobs(
                runs.jobs(session, ws, include_archived=include_archived), selectors
            )
        else:
            query = select(*LISTED).where(Job.workspace_id == ws.id).order_by(Job.job_ref)
            if not include_archived:
                query = query.where(Job.status == "active")
            picked = list(session.execute(query))
            _describe_new(session, picked)
        ids = [j.id for j in picked]
        last = runs.last_run_rows(session, ids)
        fires = schedules.next_fire_by_job(session, ids)
        return [job_dict(j, last.get(j.id), fires.get(j.id)) for j in picked]


def _describe_new(session: Session, jobs: Sequence[Job | JobRow]) -> None:
    """Read the definitions of the listed jobs not described yet, in one query."""
    with _described_lock:
        new = {j.id: j.fingerprint for j in jobs if j.fingerprint not in _DESCRIBED}
    if not new:
        return
    for job_id, definition in session.execute(
        select(Job.id, Job.definition).where(Job.id.in_(list(new)))
    ):
        _remember(new[job_id], definition)


def job_info(ctl: Controller, principal: Principal, name: str, job_name: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        job = runs.find_job(session, ws, job_name)
        fires = schedules.next_fire_by_job(session, [job.id])
        info = job_dict(job, runs.last_runs(session, [job.id]).get(job.id), fires.get(job.id))
        info["definition"] = job.definition
        info["run_count"] = job.runs_created
        where, error = ctl.lifecycle.place(job)
        info["placement"] = {
            "pool": where.pool,
            "labels": where.labels,
            "unmapped": where.unmapped,
            "error": error,
        }
        info.update(_schedule_info(session, ws, job, ctl.clock.now()))
        return info


def _schedule_info(session: Session, ws: Workspace, job: Job, now: Any) -> dict[str, Any]:
    """Next fire times (UTC and the job's timezone), freshness state and the interval."""
    tz = dltadapter.job_timezone(job.definition)
    rows = schedules.for_job(session, job)
    upcoming = (
        sorted(
            {t for row in rows for t in ticks.upcoming(row.trigger, row.timezone, row.next_fire_at)}
        )[:5]
        if job.status == "active" and job.paused_at is None
        else []
    )
    gate = facts.freshness_reason(session, ws, job, now)
    return {
        "timezone": tz,
        "next_runs": [t.isoformat() for t in upcoming],
        "next_runs_local": [t.astimezone(ZoneInfo(tz)).isoformat() for t in upcoming],
        "schedules": [
            {
                "trigger": r.trigger,
                "timezone": r.timezone,
                "next_fire_at": r.next_fire_at.isoformat() if r.next_fire_at else None,
                "last_tick": r.last_tick.isoformat() if r.last_tick else None,
            }
            for r in rows
        ],
        "freshness": {
            "constraints": list(job.definition.get("freshness") or []),
            "fresh": gate is None,
            "reason": gate,
        },
        "interval": facts.interval_state(session, job, now),
        "refresh_pending": job.refresh_pending,
        "concurrency": rules.concurrency_limit(job.definition),
    }


def preview_schedules(
    ctl: Controller, principal: Principal, name: str, jobs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What deploying these job definitions would do to their schedules (for `deploy
    --dry-run`; `schedulepreview`). Nothing is written."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        try:
            ws: Workspace | None = access.workspace(session, principal, name, "read")
        except NotFound:
            principal.require("deploy")
            ws = None
        return schedulepreview.preview(session, ws, jobs, now)


def pause_job(
    ctl: Controller, principal: Principal, name: str, job_name: str, paused: bool
) -> dict[str, Any]:
    """Pause (or resume) a job's timed triggers. The triggers stay what the deployed code
    declares; the pause is kept across redeploys until someone resumes the job."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "deploy")
        job = runs.find_job(session, ws, job_name)
        actor = audit.token(session, principal.token_id)
        if paused:
            token = session.get(Token, principal.token_id)
            schedules.pause(job, token.name if token else f"token {principal.token_id}", now)
        else:
            schedules.resume(session, job, now)
        audit.record(session, actor, "pause" if paused else "resume", now, ws, job.job_ref)
        last = runs.last_runs(session, [job.id]).get(job.id)
        info = job_dict(job, last, schedules.next_fire_by_job(session, [job.id]).get(job.id))
        ctl.events.publish(session, ScheduleChanged(job.id))
    return info
