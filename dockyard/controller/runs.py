"""Runs: created by a trigger, claimed and executed by the runner, read by the API.

A run records the job, the trigger that fired, the deployment and configuration versions it
runs, the profile, its interval and how it ended. Reads only: a run's status is decided and
written by `controller/lifecycle`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.orm import Session

from dockyard.clock import isoformat
from dockyard.controller import dltadapter
from dockyard.controller.lifecycle.status import RunStatus
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import Conflict, InvalidInput, NotFound

RunRow = Row[Any]  # a run's columns by name, as read by `select(*SHOWN)`
# the columns `as_dict` shows (not the traceback, entry point or stop bookkeeping)
SHOWN_NAMES = [
    "id",
    "job_id",
    "number",
    "trigger",
    "status",
    "reason",
    "created_at",
    "started_at",
    "finished_at",
    "exit_code",
    "signal",
    "profile",
    "deployment_version",
    "configuration_version",
    "interval_start",
    "interval_end",
    "refresh",
    "result",
    "timeout_s",
    "grace_s",
    "scheduled_for",
    "cause_run_id",
    "rerun_of",
    "env_hash",
    "executor",
    "triggered_by",
    "manual",
    "cancelled_by",
    "holder",
    "pool",
    "labels",
]
SHOWN = tuple(getattr(Run, name) for name in SHOWN_NAMES)


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
    found = {r.job_id: r for r in session.scalars(_numbered_last(select(Run), job_ids))}
    found.update(_unnumbered(session, job_ids, found))
    return found


def last_run_rows(session: Session, job_ids: Sequence[int]) -> dict[int, Run | RunRow]:
    """`last_runs` as plain rows (the run's columns by name, read-only): a listing of
    hundreds of jobs skips the ORM's bookkeeping for each run (`as_dict` takes either)."""
    if not job_ids:
        return {}
    rows = session.execute(_numbered_last(select(*SHOWN), job_ids))
    found: dict[int, Run | RunRow] = {r.job_id: r for r in rows}
    found.update(_unnumbered(session, job_ids, found))
    return found


def _numbered_last(query: Select[Any], job_ids: Sequence[int]) -> Select[Any]:
    return query.join(Job, (Job.id == Run.job_id) & (Job.runs_created == Run.number)).where(
        Job.id.in_(job_ids)
    )


def _unnumbered(
    session: Session, job_ids: Sequence[int], found: Mapping[int, object]
) -> dict[int, Run]:
    """The newest runs of the jobs the numbered lookup missed: jobs that never ran (an
    empty index range each), or a counter ahead."""
    missing = [i for i in job_ids if i not in found]
    return _newest_by_number(session, missing) if missing else {}


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


def as_dict(run: Run | RunRow, job_ref: str) -> dict[str, Any]:
    """A run as the API and the pages show it, from its ORM object or a row of `SHOWN`."""
    if isinstance(run, Run):
        v = {name: getattr(run, name) for name in SHOWN_NAMES}
    else:  # a row reads fastest as a whole
        v = dict(zip(SHOWN_NAMES, run, strict=True))
    return {
        "run_id": v["id"],
        "number": v["number"],
        "job_ref": job_ref,
        "status": v["status"],
        "trigger": v["trigger"],
        "reason": v["reason"],
        "created_at": isoformat(v["created_at"]),
        "started_at": isoformat(v["started_at"]),
        "finished_at": isoformat(v["finished_at"]),
        "exit_code": v["exit_code"],
        "signal": v["signal"],
        "profile": v["profile"],
        "deployment_version": v["deployment_version"],
        "configuration_version": v["configuration_version"],
        "interval_start": isoformat(v["interval_start"]),
        "interval_end": isoformat(v["interval_end"]),
        "refresh": v["refresh"],
        "result": v["result"],
        "timeout_s": v["timeout_s"],
        "grace_s": v["grace_s"],
        "scheduled_for": isoformat(v["scheduled_for"]),
        "skip_reason": v["reason"] if v["status"] == RunStatus.SKIPPED else None,
        "cause_run_id": v["cause_run_id"],
        "rerun_of": v["rerun_of"],
        "environment": v["env_hash"],
        "executor": v["executor"],
        "triggered_by": v["triggered_by"],
        "manual": v["manual"],
        "cancelled_by": v["cancelled_by"],
        "holder": v["holder"],
        "pool": v["pool"],
        "labels": dict(v["labels"] or {}),
    }


def update_run(run_id: str) -> Any:
    """An UPDATE of one run's own fields (never its status: `lifecycle` writes that)."""
    return update(Run).where(Run.id == run_id)
