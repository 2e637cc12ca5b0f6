"""Use cases behind the JSON API (and, later, the web pages): parse nothing, render nothing.

Each function takes the controller, the caller's principal and plain arguments, checks the
principal's rights, does the work in one transaction and returns JSON-ready data.
"""

import json
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import crypto
from dockyard.clock import isoformat
from dockyard.controller import (
    auth,
    beacon,
    dltadapter,
    gitstore,
    logs,
    manifests,
    planning,
    runs,
    workspaces,
)
from dockyard.controller.core import Controller
from dockyard.controller.lifecycle import (
    ACTIVE,
    TERMINAL,
    Request,
    RunStatus,
    ScheduleChanged,
    facts,
    rules,
)
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.scheduling import ticks
from dockyard.controller.store.models import Job, Reconciliation, Run, Token, Workspace
from dockyard.errors import Conflict, DockyardError, InvalidInput, NotFound

Principal = auth.Principal
_beacon_lock = threading.Lock()  # a run's caps are checked and its payload stored as one step


def _workspace(session: Session, principal: Principal, name: str, role: str) -> Workspace:
    try:
        ws = workspaces.get(session, name)
    except NotFound:
        # a token limited to one workspace learns nothing about the others
        principal.require(role, -1)
        raise
    principal.require(role, ws.id)
    return ws


def _repo(ctl: Controller, name: str) -> Any:
    return gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, name))


# workspaces -----------------------------------------------------------------------------
def workspace_dict(ws: Workspace) -> dict[str, Any]:
    return {
        "name": ws.name,
        "created_at": ws.created_at.isoformat(),
        "reconciled_sha": ws.reconciled_sha,
        "deployment_version": ws.deployment_version,
        "configuration_version": ws.configuration_version,
        "reconcile_error": ws.reconcile_error,
        "executor": ws.executor,
    }


def list_workspaces(ctl: Controller, principal: Principal) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        return [
            workspace_dict(ws)
            for ws in workspaces.list_all(session)
            if principal.workspace_id in (None, ws.id)
        ]


def create_workspace(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    principal.require("admin")
    with ctl.db.session() as session:
        ws = workspaces.create(session, ctl.settings.repos_dir, name, ctl.hooks)
        ctl.keys.ensure(session, ws)
        return workspace_dict(ws)


def workspace_info(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "read")
        info = workspace_dict(ws)
        active = runs.jobs(session, ws)
        info["jobs"] = len(active)
        info["active_runs"] = len(
            list(session.scalars(runs.runs_query(ws).where(Run.status.in_(ACTIVE))))
        )
    info["head_sha"] = gitstore.head_sha(_repo(ctl, name))
    info["effective_executor"] = info["executor"] or ctl.executor.default
    return info


def set_executor(
    ctl: Controller, principal: Principal, name: str, executor: str | None
) -> dict[str, Any]:
    """Where the workspace's runs execute from now on (None: the server's default)."""
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "admin")
        if executor is not None:
            ctl.executor.get(executor)  # refuses an unknown name
        ws.executor = executor
        info = workspace_dict(ws)
    info["effective_executor"] = executor or ctl.executor.default
    return info


# tokens ---------------------------------------------------------------------------------
def create_token(
    ctl: Controller, principal: Principal, name: str, role: str, workspace: str | None
) -> dict[str, Any]:
    principal.require("admin")
    with ctl.db.session() as session:
        ws = workspaces.get(session, workspace) if workspace else None
        clear, row = auth.create(session, name, role, ws)
        return {**auth.as_dict(row, workspace), "token": clear}


def list_tokens(ctl: Controller, principal: Principal) -> list[dict[str, Any]]:
    principal.require("admin")
    with ctl.db.session() as session:
        names = {w.id: w.name for w in workspaces.list_all(session)}
        rows = session.scalars(select(Token).order_by(Token.id))
        return [auth.as_dict(r, names.get(r.workspace_id or -1)) for r in rows]


def revoke_token(ctl: Controller, principal: Principal, token_id: int) -> dict[str, Any]:
    principal.require("admin")
    with ctl.db.session() as session:
        return auth.as_dict(auth.revoke(session, token_id))


# jobs -----------------------------------------------------------------------------------
def job_dict(job: Job, last: Run | None, next_fire: Any = None) -> dict[str, Any]:
    definition = job.definition
    expose = definition.get("expose") or {}
    tags = expose.get("tags") or []
    return {
        "job_ref": job.job_ref,
        "name": dltadapter.short_name(job.job_ref),
        "job_type": job.job_type,
        "triggers": list(definition.get("triggers") or []),
        "triggers_humanized": [
            dltadapter.humanize_trigger(t) for t in definition.get("triggers") or []
        ],
        "default_trigger": definition.get("default_trigger"),
        "tags": [tags] if isinstance(tags, str) else list(tags),
        "description": definition.get("description"),
        "status": job.status,
        "created_sha": job.created_sha,
        "updated_sha": job.updated_sha,
        "last_run": runs.as_dict(last, job.job_ref) if last else None,
        "paused_at": isoformat(job.paused_at),
        "paused_by": job.paused_by,
        "next_fire_at": isoformat(next_fire) if job.status == "active" else None,
    }


def list_jobs(
    ctl: Controller, principal: Principal, name: str, include_archived: bool = True
) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "read")
        all_jobs = runs.jobs(session, ws, include_archived=include_archived)
        ids = [j.id for j in all_jobs]
        last = runs.last_runs(session, ids)
        fires = schedules.next_fire_by_job(session, ids)
        return [job_dict(j, last.get(j.id), fires.get(j.id)) for j in all_jobs]


def job_info(ctl: Controller, principal: Principal, name: str, job_name: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "read")
        job = runs.find_job(session, ws, job_name)
        fires = schedules.next_fire_by_job(session, [job.id])
        info = job_dict(job, runs.last_runs(session, [job.id]).get(job.id), fires.get(job.id))
        info["definition"] = job.definition
        info["run_count"] = job.runs_created
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
    --dry-run`): old and new timed triggers, the next fire time of each, and for interval jobs
    the window their next run would cover. Nothing is written."""
    now = ctl.clock.now()
    out = []
    with ctl.db.session() as session:
        try:
            ws: Workspace | None = _workspace(session, principal, name, "read")
        except NotFound:
            principal.require("deploy")
            ws = None
        existing = {j.job_ref: j for j in runs.jobs(session, ws, True)} if ws else {}
        for definition in jobs:
            job = existing.get(definition["job_ref"])
            entry = _schedule_change(session, job, definition, now)
            if entry is not None:
                out.append(entry)
    return out


def _schedule_change(
    session: Session, job: Job | None, definition: dict[str, Any], now: Any
) -> dict[str, Any] | None:
    old = dltadapter.timed_triggers(job.definition) if job and job.status == "active" else []
    new = dltadapter.timed_triggers(definition)
    has_interval = bool(definition.get("interval"))
    if old == new and not has_interval:
        return None
    tz = dltadapter.job_timezone(definition)
    kept = {r.trigger: r.next_fire_at for r in schedules.for_job(session, job)} if job else {}
    next_fire = {
        t: (kept[t] if t in kept and t in old else ticks.first_fire(t, tz, now)) for t in new
    }
    entry: dict[str, Any] = {
        "job_ref": definition["job_ref"],
        "old_triggers": old,
        "new_triggers": new,
        "timezone": tz,
        "next_fire_at": {t: at.isoformat() if at else None for t, at in next_fire.items()},
        "next_window": None,
    }
    if has_interval:
        done = facts.completed_end(session, job) if job else None
        trigger = str(definition.get("default_trigger") or "manual:")
        decision = rules.window(definition, trigger, now, done, False)
        if decision.window is not None:
            entry["next_window"] = [
                decision.window.start.isoformat(),
                decision.window.end.isoformat(),
            ]
        entry["next_window_skip_reason"] = decision.skip_reason
    return entry


def pause_job(
    ctl: Controller, principal: Principal, name: str, job_name: str, paused: bool
) -> dict[str, Any]:
    """Pause (or resume) a job's timed triggers. The triggers stay what the deployed code
    declares; the pause is kept across redeploys until someone resumes the job."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "deploy")
        job = runs.find_job(session, ws, job_name)
        if paused:
            token = session.get(Token, principal.token_id)
            schedules.pause(job, token.name if token else f"token {principal.token_id}", now)
        else:
            schedules.resume(session, job, now)
        last = runs.last_runs(session, [job.id]).get(job.id)
        info = job_dict(job, last, schedules.next_fire_by_job(session, [job.id]).get(job.id))
        ctl.events.publish(session, ScheduleChanged(job.id))
    return info


# triggering and cancelling --------------------------------------------------------------
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
        ws = _workspace(session, principal, name, "deploy")
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
        ws = _workspace(session, principal, name, "deploy")
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
        run, job = _run(session, run_id)
        _workspace_by_id(session, principal, run.workspace_id, "deploy")
        if run.status in TERMINAL:
            raise Conflict(f"run #{run.number} of {job.job_ref} already ended ({run.status})")
        status = ctl.lifecycle.cancel(session, run, now)
    return {"run_id": run_id, "status": status}


# runs -----------------------------------------------------------------------------------
def _run(session: Session, run_id: str) -> tuple[Run, Job]:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    job = session.get(Job, run.job_id)
    assert job is not None
    return run, job


def _workspace_by_id(session: Session, principal: Principal, ws_id: int, role: str) -> Workspace:
    ws = session.get(Workspace, ws_id)
    assert ws is not None
    principal.require(role, ws.id)
    return ws


def list_runs(
    ctl: Controller,
    principal: Principal,
    name: str,
    selector: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "read")
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
        ws = _workspace(session, principal, name, "read")
        job = runs.find_job(session, ws, job_name)
        run = runs.get_run(session, ws, job, number)
        return _run_details(session, run, job)


def run_by_id(ctl: Controller, principal: Principal, run_id: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        run, job = _run(session, run_id)
        _workspace_by_id(session, principal, run.workspace_id, "read")
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
        run, _job = _run(session, run_id)
        _workspace_by_id(session, principal, run.workspace_id, "read")
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


def beacon_run(ctl: Controller, token: str, kind: str) -> str:
    """The run a beacon token names (checked before its payload is read)."""
    run_id = beacon.run_id_of(ctl.beacon_secret, token)
    beacon.check_kind(kind)
    return run_id


def record_beacon(ctl: Controller, run_id: str, kind: str, raw: bytes) -> None:
    """Store a payload a run sent to its beacon, if the run is still going and within its
    caps (settings `beacon_max_*`)."""
    settings = ctl.settings
    limits = beacon.Limits(
        settings.beacon_max_bytes, settings.beacon_max_payloads, settings.beacon_max_run_bytes
    )
    with _beacon_lock, ctl.db.session() as session:
        beacon.check_open(session, run_id, kind, len(raw), limits)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput("beacon payload is not JSON") from exc
        secrets = _run_secrets(ctl, session, run_id)
        beacon.record(session, run_id, kind, body, secrets, size=len(raw))


def _run_secrets(ctl: Controller, session: Session, run_id: str) -> list[str]:
    """The run's secret values, to keep them out of what it reports: from its configuration
    folder while it runs, else decrypted again from its configuration version."""
    found = logs.redactions(ctl.preparer.run_dir(run_id))
    run = session.get(Run, run_id)
    if found or run is None or run.configuration_version is None:
        return found
    ws = session.get(Workspace, run.workspace_id)
    assert ws is not None
    repo = _repo(ctl, ws.name)
    files = gitstore.config_files(repo, run.configuration_version)
    if not any(crypto.is_secret_file(n) for n in files):
        return []
    try:
        return crypto.open_files(files, lambda: ctl.keys.identities(session, ws))[1]
    except DockyardError:
        return []  # damaged secrets: the run was refused, nothing of them can leak


# deployments and configurations -----------------------------------------------------------
def reconcile(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        _workspace(session, principal, name, "deploy")
    outcome = ctl.reconciler.reconcile(name)
    return {"sha": outcome.sha, "changed": outcome.changed, **outcome.result}


def reconciliation(ctl: Controller, principal: Principal, name: str, sha: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "read")
        row = session.scalar(
            select(Reconciliation).where(
                Reconciliation.workspace_id == ws.id, Reconciliation.sha == sha
            )
        )
        if row is None:
            error = (
                ws.reconcile_error
                if ws.reconcile_error and ws.reconcile_error.startswith(sha[:12])
                else None
            )
            raise NotFound(error or f"version {sha[:12]} is not reconciled (yet)")
        return {"sha": sha, "applied_at": row.applied_at.isoformat(), **row.result}


def versions(ctl: Controller, principal: Principal, name: str, kind: str) -> list[dict[str, str]]:
    with ctl.db.session() as session:
        _workspace(session, principal, name, "read")
    paths = gitstore.DEPLOYMENT_PATHS if kind == "deployment" else gitstore.CONFIGURATION_PATHS
    return [v.as_dict() for v in gitstore.history(_repo(ctl, name), paths)]


def _version_at(
    ctl: Controller, principal: Principal, name: str, sha: str | None, kind: str
) -> tuple[Any, gitstore.Version]:
    """The repository and the named version (default: the current one) of `kind`."""
    with ctl.db.session() as session:
        ws = _workspace(session, principal, name, "read")
        current = ws.deployment_version if kind == "deployment" else ws.configuration_version
    sha = sha or current
    if sha is None:
        raise NotFound(f"workspace {name} has no {kind} yet; run `dockyard deploy`")
    repo = _repo(ctl, name)
    return repo, gitstore.version_info(repo, sha)


def deployment_info(
    ctl: Controller, principal: Principal, name: str, sha: str | None
) -> dict[str, Any]:
    repo, version = _version_at(ctl, principal, name, sha, "deployment")
    history = [v.sha for v in gitstore.history(repo, gitstore.DEPLOYMENT_PATHS)]
    if version.sha not in history:
        raise NotFound(
            f"{version.sha[:12]} is not a deployment version; `dockyard deployment list`"
        )
    index = history.index(version.sha)
    previous = history[index + 1] if index + 1 < len(history) else None
    manifest = _manifest_at(repo, version.sha)
    plan = planning.plan(_manifest_at(repo, previous) if previous else None, manifest)
    files = [
        p
        for p in gitstore.changed_paths(repo, previous, version.sha)
        if not p.startswith(gitstore.CONFIG + "/")
    ]
    return {
        **version.as_dict(),
        "previous_version": previous,
        "plan": plan.as_dict(),
        "changed_files": files,
        "jobs": [j["job_ref"] for j in manifest.get("jobs", [])],
        "description": manifest.get("description"),
    }


def _manifest_at(repo: Any, sha: str) -> dict[str, Any]:
    data = gitstore.read_file(repo, sha, gitstore.MANIFEST)
    return manifests.load_yaml(data) if data else {"jobs": []}
