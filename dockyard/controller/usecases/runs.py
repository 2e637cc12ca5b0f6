"""Runs: start them (`trigger`), cancel them, list them, show one, and page through its log."""

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from dockyard.controller import beacon, dltadapter, logs, runs
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import ACTIVE, TERMINAL, Request, RunStatus
from dockyard.controller.store.models import Job, Run
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal
from dockyard.errors import Conflict


def trigger(
    ctl: Controller,
    principal: Principal,
    name: str,
    selectors: list[str],
    refresh: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Start the matched jobs now. A person starting a job is not held back by freshness
    gates, but concurrency limits and interval windows apply as to any run."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "deploy")
        matched = runs.select_jobs(session, ws, selectors)
        triggered = []
        for job, fired in matched:
            entry: dict[str, Any] = {"job_ref": job.job_ref, "trigger": fired}
            if dry_run:
                entry.update(run_id=None, status="would_trigger")
            else:
                request = Request(fired, refresh=refresh, gated=False)
                run = ctl.lifecycle.create(session, ws, job, request, now)
                entry.update(
                    run_id=run.id,
                    number=run.number,
                    status="triggered" if run.status == RunStatus.PENDING else "skipped",
                    skip_reason=run.reason if run.status == RunStatus.SKIPPED else None,
                    run=runs.as_dict(run, job.job_ref),
                )
            triggered.append(entry)
    return {"triggered": triggered, "dry_run": dry_run}


def cancel_jobs(
    ctl: Controller, principal: Principal, name: str, selectors: list[str]
) -> dict[str, Any]:
    now = ctl.clock.now()
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "deploy")
        matched = runs.select_jobs(session, ws, selectors)
        refs = {job.id: job.job_ref for job, _ in matched}
        active = session.scalars(
            runs.runs_query(ws).where(Run.job_id.in_(refs), Run.status.in_(ACTIVE))
        )
        cancelled = [
            {
                "run_id": r.id,
                "job_ref": refs[r.job_id],
                "number": r.number,
                "status": ctl.lifecycle.cancel(session, r, now),
            }
            for r in active
        ]
    not_running = sorted(set(refs.values()) - {c["job_ref"] for c in cancelled})
    return {"cancelled": cancelled, "not_running": not_running}


def cancel_run(ctl: Controller, principal: Principal, run_id: str) -> dict[str, Any]:
    now = ctl.clock.now()
    with ctl.db.session() as session:
        run, job = access.run(session, run_id)
        access.workspace_by_id(session, principal, run.workspace_id, "deploy")
        if run.status in TERMINAL:
            raise Conflict(f"run #{run.number} of {job.job_ref} already ended ({run.status})")
        status = ctl.lifecycle.cancel(session, run, now)
    return {"run_id": run_id, "status": status}


def list_runs(
    ctl: Controller,
    principal: Principal,
    name: str,
    selector: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        job_ids = None
        if selector:
            if dltadapter.is_selector(selector):
                job_ids = [job.id for job, _ in runs.select_jobs(session, ws, [selector])]
            else:
                job_ids = [runs.find_job(session, ws, selector).id]
        refs = {j.id: j.job_ref for j in runs.jobs(session, ws, include_archived=True)}
        return [
            runs.as_dict(r, refs[r.job_id])
            for r in runs.list_runs(session, ws, job_ids, status, limit)
        ]


def run_info(
    ctl: Controller, principal: Principal, name: str, job_name: str, number: int | None
) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        job = runs.find_job(session, ws, job_name)
        run = runs.get_run(session, ws, job, number)
        return _run_details(session, run, job)


def run_by_id(ctl: Controller, principal: Principal, run_id: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        run, job = access.run(session, run_id)
        access.workspace_by_id(session, principal, run.workspace_id, "read")
        return _run_details(session, run, job)


def _run_details(session: Session, run: Run, job: Job) -> dict[str, Any]:
    info = runs.as_dict(run, job.job_ref)
    info["pipelines"] = beacon.load_summary(beacon.payloads(session, run.id, "trace"))
    info["entry_point"] = run.entry_point
    return info


def run_logs(
    ctl: Controller,
    principal: Principal,
    run_id: str,
    offset: int = 0,
    tail: int | None = None,
    limit: int = logs.READ_LINES,
    count: bool = False,
) -> dict[str, Any]:
    """One bounded page of a run's log: from byte `offset`, or from where its last `tail`
    lines start; `line_count` (complete lines in the whole log) when `count` is asked."""
    with ctl.db.session() as session:
        run, _job = access.run(session, run_id)
        access.workspace_by_id(session, principal, run.workspace_id, "read")
        status = run.status
    run_dir = ctl.preparer.run_dir(run_id)
    # past the end there is nothing to read (and past the filesystem's largest file, a read
    # fails): start at most at the end
    start = logs.tail_offset(run_dir, tail) if tail is not None else offset
    start = min(start, _size(logs.path(run_dir)))
    chunk = logs.read(run_dir, start, min(max(1, limit), logs.READ_LINES))
    return {
        "run_id": run_id,
        "status": status,
        "lines": chunk.lines,
        "offset": start,
        "next_offset": chunk.next_offset,
        "size": chunk.size,
        "more": chunk.more,
        "line_count": logs.count_lines(run_dir) if count else None,
        "done": status in TERMINAL,
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
