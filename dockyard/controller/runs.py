"""Runs: created by a trigger, claimed and executed by the runner, read by the API.

A run records the job, the trigger that fired, the deployment and configuration versions it
runs, the profile, its interval and how it ended. Reads only: a run's status is decided and
written by `controller/lifecycle`.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from dockyard.clock import isoformat
from dockyard.controller import dltadapter
from dockyard.controller.lifecycle.status import RunStatus
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import Conflict, InvalidInput, NotFound


def jobs(session: Session, ws: Workspace, include_archived: bool = False) -> list[Job]:
    query = select(Job).where(Job.workspace_id == ws.id).order_by(Job.job_ref)
    if not include_archived:
        query = query.where(Job.status == "active")
    return list(session.scalars(query))


def find_job(session: Session, ws: Workspace, name: str) -> Job:
    """The job `name` names (short name, `section.name` or ref; archived jobs included)."""
    refs = list(session.scalars(select(Job.job_ref).where(Job.workspace_id == ws.id)))
    ref = dltadapter.resolve_job_ref(name, refs)
    return session.scalars(select(Job).where(Job.workspace_id == ws.id, Job.job_ref == ref)).one()


def select_jobs(session: Session, ws: Workspace, selectors: Sequence[str]) -> list[tuple[Job, str]]:
    """Active jobs matched by dlt's selector rules, each with the trigger it fires with."""
    return [(job, fires) for job, _matched, fires in select_matched(session, ws, selectors)]


def select_matched(
    session: Session, ws: Workspace, selectors: Sequence[str]
) -> list[tuple[Job, str, str]]:
    """Active jobs matched by dlt's selector rules, each with the trigger the selectors
    matched and the one it fires with (`dltadapter.match_trigger`).

    A plain job name (not a selector) means that job, fired manually; a name or selector that
    matches nothing is an error, so a typo never silently does nothing.
    """
    if not selectors:
        raise InvalidInput("give at least one job name or selector (e.g. `tag:ingest`, `batch`)")
    active = jobs(session, ws)
    resolved: list[str] = []
    for text in selectors:
        if dltadapter.is_selector(text):
            resolved.append(text)
        else:
            resolved.append(f"manual:{_active_ref(session, ws, text, active)}")
    matched: list[tuple[Job, str, str]] = []
    for job in active:
        found = dltadapter.match_trigger(job.definition, resolved)
        if found is not None:
            matched.append((job, *found))
    if not matched:
        raise NotFound(
            f"no active job matches {' '.join(selectors)};"
            " `dockyard job list` shows jobs and their triggers"
        )
    return matched


def filter_jobs(listed: Sequence[Job], selectors: Sequence[str]) -> list[Job]:
    """The jobs of `listed` (archived ones too) that dlt's selector rules pick: a selector
    (`tag:x`, `batch`, `schedule:*`, `jobs.sec.*`, `manual:jobs.sec.*`) by
    `dltadapter.selects_job`, a plain name the one job it names (unknown: an error)."""
    names = [s for s in selectors if not dltadapter.is_selector(s)]
    refs = {dltadapter.resolve_job_ref(n, [j.job_ref for j in listed]) for n in names}
    patterns = [s for s in selectors if dltadapter.is_selector(s)]
    return [
        j
        for j in listed
        if j.job_ref in refs or any(dltadapter.selects_job(j.definition, p) for p in patterns)
    ]


def _active_ref(session: Session, ws: Workspace, name: str, active: list[Job]) -> str:
    try:
        return dltadapter.resolve_job_ref(name, [j.job_ref for j in active])
    except NotFound:
        archived = [j for j in jobs(session, ws, include_archived=True) if j.status == "archived"]
        try:
            ref = dltadapter.resolve_job_ref(name, [j.job_ref for j in archived])
        except (NotFound, InvalidInput):
            raise
        raise Conflict(
            f"job {ref} is archived (no longer in the deployed manifest); deploy it again to run it"
        ) from None


def runs_query(ws: Workspace) -> Select[Run]:
    return select(Run).where(Run.workspace_id == ws.id)


def list_runs(
    session: Session,
    ws: Workspace,
    job_ids: Sequence[int] | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Run]:
    query = runs_query(ws)
    if job_ids is not None:
        query = query.where(Run.job_id.in_(job_ids))
    if status:
        query = query.where(Run.status == status)
    return list(session.scalars(query.order_by(Run.created_at.desc()).limit(limit)))


def get_run(session: Session, ws: Workspace, job: Job, number: int | None) -> Run:
    query = runs_query(ws).where(Run.job_id == job.id)
    if number is None:
        run = session.scalar(query.order_by(Run.number.desc()).limit(1))
    else:
        run = session.scalar(query.where(Run.number == number))
    if run is None:
        if number is None:
            raise NotFound(f"job {job.job_ref} has not run yet; start it with `dockyard launch`")
        raise NotFound(
            f"job {job.job_ref} has no run #{number}; `dockyard job-run list` shows runs"
        )
    return run


def last_runs(session: Session, job_ids: Sequence[int]) -> dict[int, Run]:
    """The newest run of each job: the one numbered `job.runs_created` (numbers come from
    that counter, in the same transaction as the run row), one indexed lookup per job."""
    if not job_ids:
        return {}
    rows = session.scalars(
        select(Run)
        .join(Job, (Job.id == Run.job_id) & (Job.runs_created == Run.number))
        .where(Job.id.in_(job_ids))
    )
    found = {r.job_id: r for r in rows}
    missing = [i for i in job_ids if i not in found]
    if missing:  # jobs that never ran (an empty index range each), or a counter ahead
        found.update(_newest_by_number(session, missing))
    return found


def _newest_by_number(session: Session, job_ids: Sequence[int]) -> dict[int, Run]:
    newest = (
        select(Run.job_id, func.max(Run.number)).where(Run.job_id.in_(job_ids)).group_by(Run.job_id)
    )
    latest = dict(session.execute(newest).all())
    if not latest:
        return {}
    rows = session.scalars(
        select(Run).where(Run.job_id.in_(latest), Run.number.in_(set(latest.values())))
    )
    return {r.job_id: r for r in rows if latest.get(r.job_id) == r.number}


def as_dict(run: Run, job_ref: str) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "number": run.number,
        "job_ref": job_ref,
        "status": run.status,
        "trigger": run.trigger,
        "reason": run.reason,
        "created_at": isoformat(run.created_at),
        "started_at": isoformat(run.started_at),
        "finished_at": isoformat(run.finished_at),
        "exit_code": run.exit_code,
        "signal": run.signal,
        "profile": run.profile,
        "deployment_version": run.deployment_version,
        "configuration_version": run.configuration_version,
        "interval_start": isoformat(run.interval_start),
        "interval_end": isoformat(run.interval_end),
        "refresh": run.refresh,
        "result": run.result,
        "timeout_s": run.timeout_s,
        "grace_s": run.grace_s,
        "scheduled_for": isoformat(run.scheduled_for),
        "skip_reason": run.reason if run.status == RunStatus.SKIPPED else None,
        "cause_run_id": run.cause_run_id,
        "rerun_of": run.rerun_of,
        "environment": run.env_hash,
        "executor": run.executor,
        "triggered_by": run.triggered_by,
        "manual": run.manual,
        "cancelled_by": run.cancelled_by,
        "holder": run.holder,
        "pool": run.pool,
        "labels": dict(run.labels or {}),
    }


def update_run(run_id: str) -> Any:
    """An UPDATE of one run's own fields (never its status: `lifecycle` writes that)."""
    return update(Run).where(Run.id == run_id)
