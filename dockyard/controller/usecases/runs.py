"""Runs: start them (`trigger`), cancel them, list them, show one, and page through its log."""

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from dockyard.controller import audit, beacon, dltadapter, logs, runlinks, runs, unplaced
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import ACTIVE, TERMINAL, Request, RunStatus
from dockyard.controller.lifecycle.rules import Window
from dockyard.controller.store.models import Job, Run, Workspace
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
        matched = runs.select_matched(session, ws, selectors)
        actor = audit.token(session, principal.token_id)
        triggered = []
        for job, hit, fired in matched:
            entry: dict[str, Any] = {"job_ref": job.job_ref, "trigger": fired}
            entry["matched_trigger"] = hit
            if dry_run:
                entry.update(run_id=None, status="would_trigger")
            else:
                request = Request(
                    fired, refresh=refresh, gated=False, triggered_by=actor.label, manual=True
                )
                run = ctl.lifecycle.create(session, ws, job, request, now)
                _audit_launch(session, actor, ws, job, run, now)
                entry.update(
                    run_id=run.id,
                    number=run.number,
                    status="skipped" if run.status == RunStatus.SKIPPED else "triggered",
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
        actor = audit.token(session, principal.token_id)
        active = session.scalars(
            runs.runs_query(ws).where(Run.job_id.in_(refs), Run.status.in_(ACTIVE))
        )
        cancelled = [
            {
                "run_id": r.id,
                "job_ref": refs[r.job_id],
                "number": r.number,
                "status": _cancel(ctl, session, actor, ws, r, refs[r.job_id], now),
            }
            for r in list(active)
        ]
    not_running = sorted(set(refs.values()) - {c["job_ref"] for c in cancelled})
    return {"cancelled": cancelled, "not_running": not_running}


def cancel_run(ctl: Controller, principal: Principal, run_id: str) -> dict[str, Any]:
    now = ctl.clock.now()
    with ctl.db.session() as session:
        run, job = access.run(session, run_id)
        ws = access.workspace_by_id(session, principal, run.workspace_id, "deploy")
        if run.status in TERMINAL:
            raise Conflict(f"run #{run.number} of {job.job_ref} already ended ({run.status})")
        actor = audit.token(session, principal.token_id)
        status = _cancel(ctl, session, actor, ws, run, job.job_ref, now)
    return {"run_id": run_id, "status": status}


def rerun(ctl: Controller, principal: Principal, run_id: str) -> dict[str, Any]:
    """Run a finished run again: the same job at the latest deployment and configuration,
    the same trigger, refresh and window (an interval job's window again, even one the
    ledger holds as completed), recorded with `rerun_of`. Concurrency applies, freshness
    gates do not (a person asked); an active run, an archived job or an app is refused."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        run, job = access.run(session, run_id)
        ws = access.workspace_by_id(session, principal, run.workspace_id, "deploy")
        _check_rerun(run, job)
        actor = audit.token(session, principal.token_id)
        made = ctl.lifecycle.create(session, ws, job, rerun_request(run, actor.label), now)
        _audit_launch(session, actor, ws, job, made, now)
        return runs.as_dict(made, job.job_ref)


def rerun_request(run: Run, triggered_by: str | None = None) -> Request:
    """What a re-run of `run` asks for. Its trigger is the run's own (dlt's
    `run_context["trigger"]` is the same); `rerun_of` says it is a re-run of `#N`; a person
    asked, so it is `manual`, made by `triggered_by`."""
    window = None
    if run.interval_start is not None and run.interval_end is not None:
        window = Window(run.interval_start, run.interval_end)
    return Request(
        run.trigger,
        refresh=run.refresh,
        gated=False,
        rerun_of=run.id,
        window=window,
        triggered_by=triggered_by,
        manual=True,
    )


def _check_rerun(run: Run, job: Job) -> None:
    name = job.job_ref.rsplit(".", 1)[-1]
    if run.status not in TERMINAL:
        raise Conflict(
            f"run #{run.number} of {job.job_ref} is still {run.status}; cancel it first"
            f" (`dockyard job-run {name} {run.number} cancel`) or wait for it to end"
        )
    if job.status != "active":
        raise Conflict(f"job {job.job_ref} is archived; deploy it again to re-run its runs")
    if job.job_type == "interactive":
        raise Conflict(f"job {job.job_ref} is an app; start it with `dockyard serve {name}`")


def _cancel(
    ctl: Controller,
    session: Session,
    actor: audit.Actor,
    ws: Workspace,
    run: Run,
    job_ref: str,
    now: datetime,
) -> RunStatus:
    """Cancel `run` as `actor`: who cancelled is kept on the run and in the audit log."""
    status = ctl.lifecycle.cancel(session, run, now, by=actor.label)
    audit.record(
        session,
        actor,
        "cancel",
        now,
        ws,
        f"{job_ref} #{run.number}",
        {"run_id": run.id, "status": str(status)},
    )
    return status


def _audit_launch(
    session: Session, actor: audit.Actor, ws: Workspace, job: Job, run: Run, now: datetime
) -> None:
    detail = {"run_id": run.id, "trigger": run.trigger, "status": run.status}
    audit.record(session, actor, "launch", now, ws, f"{job.job_ref} #{run.number}", detail)


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
        return _run_details(ctl, session, run, job)


def run_by_id(ctl: Controller, principal: Principal, run_id: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        run, job = access.run(session, run_id)
        access.workspace_by_id(session, principal, run.workspace_id, "read")
        return _run_details(ctl, session, run, job)


def _run_details(ctl: Controller, session: Session, run: Run, job: Job) -> dict[str, Any]:
    info = runs.as_dict(run, job.job_ref)
    # pending with nobody to take it: it says so (and ends after DOCKYARD_PLACEMENT_WAIT_S)
    now, weights = ctl.membership.now(session), ctl.runner.slot_weights
    info["waiting"] = unplaced.waiting_hint(session, run, job.job_type, now, weights)
    info["pipelines"] = beacon.load_summary(beacon.payloads(session, run.id, "trace"))
    info["entry_point"] = run.entry_point
    info["traceback"] = run.traceback
    info["links"] = runlinks.links(session, run)
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
