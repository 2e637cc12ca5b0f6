"""Read use cases the web dashboard needs beyond the JSON API's: the overview, run lists with
keyset pages, a job's ledger, deployment diffs and pipeline schemas.

Same contract as `usecases`: the controller, the caller's principal and plain arguments in,
rights checked, JSON-ready data out. The queries are written for big workspaces (thousands of
jobs, hundreds of thousands of runs): every list is bounded and walks an index
(`ix_run_ws_created`, `ix_run_ws_status_created`, `ix_run_job_created`).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session

from dockyard.controller import (
    app_origins,
    apps,
    beacon,
    gitstore,
    lifecycle,
    planning,
    plantext,
    runs,
    unplaced,
    usecases,
)
from dockyard.controller.assembly import Controller
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.store.models import BeaconPayload, IntervalWindow, Job, Run, Workspace
from dockyard.errors import InvalidInput, NotFound

Principal = usecases.access.Principal
PAGE = 100
QUEUE_SHOWN = 10  # the pending runs the overview lists, next to start first


def _refs(session: Session, job_ids: set[int]) -> dict[int, str]:
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.job_ref).where(Job.id.in_(job_ids)))
    return dict(rows.all())


def _as_dicts(session: Session, rows: list[Run]) -> list[dict[str, Any]]:
    refs = _refs(session, {r.job_id for r in rows})
    return [runs.as_dict(r, refs[r.job_id]) for r in rows]


def _newest(query: Select[Run], limit: int) -> Select[Run]:
    return query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)


# the overview ----------------------------------------------------------------------------
def overview(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    """Jobs at a glance, what runs now, what failed lately, recent runs failures first."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "read")
        recent = _as_dicts(session, list(session.scalars(_newest(runs.runs_query(ws), 20))))
        active = _active_runs(session, ws, 10)
        queue = _queue(session, ws, now, QUEUE_SHOWN, ctl.runner.slot_weights)
        failed_24h = session.scalar(
            select(func.count())
            .select_from(Run)
            .where(
                Run.workspace_id == ws.id,
                Run.status == "failed",
                Run.created_at >= now - timedelta(hours=24),
            )
        )
        version = ws.deployment_version
        return {
            "workspace": usecases.workspaces.workspace_dict(ws),
            "description": usecases.workspaces.description(ctl, ws.name, version),
            "jobs": _job_counts(session, ws),
            "last_runs": _last_run_counts(session, ws),
            "failing": _failing_jobs(session, ws),
            "active": _as_dicts(session, active),
            "queue": queue,
            "failed_24h": failed_24h or 0,
            "recent": sorted(recent, key=lambda r: r["status"] != "failed"),
        }


def _queue(
    session: Session, ws: Workspace, now: datetime, limit: int, weights: Mapping[str, int]
) -> dict[str, Any]:
    """The workspace's pending runs in the order they start (oldest scheduled first), how
    many there are, and why they wait (every run slot in use, nobody to take them)."""
    pending = runs.runs_query(ws).where(Run.status == lifecycle.RunStatus.PENDING)
    count = session.scalar(select(func.count()).select_from(pending.subquery())) or 0
    if not count:
        return {"count": 0, "runs": [], "waiting": None}
    first = list(
        session.scalars(
            pending.order_by(
                func.coalesce(Run.scheduled_for, Run.created_at), Run.created_at, Run.id
            ).limit(limit)
        )
    )
    head = first[0]
    return {
        "count": count,
        "runs": _as_dicts(session, first),
        "waiting": unplaced.pool_hint(session, head.pool, dict(head.labels or {}), now, weights),
    }


def _active_runs(session: Session, ws: Workspace, limit: int) -> list[Run]:
    """The newest active runs: one index range per status (`status IN (…)` with an ORDER BY
    makes SQLite walk every run of the workspace in time order instead)."""
    found: list[Run] = []
    for status in lifecycle.ACTIVE:
        query = runs.runs_query(ws).where(Run.status == status)
        found.extend(session.scalars(_newest(query, limit)))
    return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]


def _job_counts(session: Session, ws: Workspace) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, Job.paused_at.is_not(None), func.count())
        .where(Job.workspace_id == ws.id)
        .group_by(Job.status, Job.paused_at.is_not(None))
    )
    counts = {"active": 0, "paused": 0, "archived": 0}
    for status, paused, count in rows:
        counts[status] = counts.get(status, 0) + count
        if paused and status == "active":
            counts["paused"] += count
    return counts


def _last_runs_query(ws: Workspace) -> Select[Job, Run]:
    """Each active job with its newest run (numbered `job.runs_created`)."""
    return (
        select(Job, Run)
        .join(Run, (Run.job_id == Job.id) & (Run.number == Job.runs_created))
        .where(Job.workspace_id == ws.id, Job.status == "active")
    )


def _last_run_counts(session: Session, ws: Workspace) -> dict[str, int]:
    rows = session.execute(
        select(Run.status, func.count())
        .select_from(Job)
        .join(Run, (Run.job_id == Job.id) & (Run.number == Job.runs_created))
        .where(Job.workspace_id == ws.id, Job.status == "active")
        .group_by(Run.status)
    )
    return dict(rows.all())


def _failing_jobs(session: Session, ws: Workspace, limit: int = 10) -> list[dict[str, Any]]:
    """Active jobs whose newest run failed, most recent failure first."""
    rows = session.execute(
        _last_runs_query(ws)
        .where(Run.status == "failed")
        .order_by(Run.created_at.desc())
        .limit(limit)
    )
    return [runs.as_dict(run, job.job_ref) for job, run in rows]


# the jobs list ---------------------------------------------------------------------------
UNTAGGED = "untagged"
JOB_STATES = ("active", "paused", "archived", "all")


@dataclass(frozen=True, slots=True)
class Listed:
    """What filtering and grouping need of a job (read without building ORM objects)."""

    id: int
    job_ref: str
    job_type: str
    status: str
    paused: bool
    tags: tuple[str, ...]
    text: str  # lower-case: ref, display name, description, tags, triggers

    @classmethod
    def of(cls, row: Any) -> "Listed":
        definition = row.definition or {}
        tags = tuple(job_tags(definition))
        triggers = [str(t) for t in definition.get("triggers") or []]
        shown = str((definition.get("expose") or {}).get("display_name") or "")
        words = [row.job_ref, shown, str(definition.get("description") or ""), *tags, *triggers]
        paused = row.paused_at is not None
        return cls(
            row.id, row.job_ref, row.job_type, row.status, paused, tags, " ".join(words).lower()
        )


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What the Jobs page shows: text in the ref, description, tags or triggers; a tag
    (`untagged` for jobs without); a job type; active (paused included), paused, archived
    or all."""

    text: str = ""
    tag: str = ""
    job_type: str = ""
    state: str = "active"

    def keeps(self, job: Listed) -> bool:
        if self.tag and self.tag not in (job.tags or (UNTAGGED,)):
            return False
        if self.job_type and job.job_type != self.job_type:
            return False
        if self.state == "paused" and not (job.status == "active" and job.paused):
            return False
        if self.state in ("active", "archived") and job.status != self.state:
            return False
        return self.text.strip().lower() in job.text


def job_tags(definition: dict[str, Any]) -> list[str]:
    tags = (definition.get("expose") or {}).get("tags") or []
    return [tags] if isinstance(tags, str) else [str(t) for t in tags]


def tag_entries(jobs: list[Listed], tag: str = "") -> list[tuple[str, Listed]]:
    """(tag, job) for each tag of each job (untagged last), in tag then job order: a job with
    several tags is listed under each, as `tag:` selectors would pick it."""
    entries = [(t, job) for job in jobs for t in job.tags or (UNTAGGED,) if not tag or t == tag]
    return sorted(entries, key=lambda e: (e[0] == UNTAGGED, e[0], e[1].job_ref))


def jobs_page(
    ctl: Controller,
    principal: Principal,
    name: str,
    filters: JobFilter,
    offset: int = 0,
    limit: int = 200,
) -> dict[str, Any]:
    """One page of the filtered jobs grouped by tag, each as `usecases.jobs.job_dict` (triggers in
    words, next fire time, last run). Filtering reads every job's definition; the rows,
    last runs and next fire times are read for the shown page only."""
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "read")
        every = [Listed.of(row) for row in session.execute(_listing(ws))]
        entries = tag_entries([j for j in every if filters.keeps(j)], filters.tag)
        shown = entries[offset : offset + limit]
        ids = list({job.id for _, job in shown})
        rows = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
        last = runs.last_runs(session, ids)
        fires = schedules.next_fire_by_job(session, ids)
        dicts = {i: usecases.jobs.job_dict(rows[i], last.get(i), fires.get(i)) for i in ids}
        groups: list[tuple[str, list[dict[str, Any]]]] = []
        for tag, job in shown:
            if not groups or groups[-1][0] != tag:
                groups.append((tag, []))
            groups[-1][1].append(dicts[job.id])
        return {
            "groups": groups,
            "total": len(every),
            "entries": len(entries),
            "offset": offset,
            "limit": limit,
            "tags": sorted({t for j in every for t in j.tags}),
        }


def _listing(ws: Workspace) -> Select[int, str, str, str, datetime | None, dict[str, Any]]:
    return select(
        Job.id, Job.job_ref, Job.job_type, Job.status, Job.paused_at, Job.definition
    ).where(Job.workspace_id == ws.id)


# runs ------------------------------------------------------------------------------------
def runs_page(
    ctl: Controller,
    principal: Principal,
    name: str,
    job: str | None = None,
    status: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = PAGE,
) -> dict[str, Any]:
    """One page of runs, newest first, after the keyset position `after` (created_at, id);
    `next` is the position to continue from (None on the last page)."""
    if status and status not in (*lifecycle.ACTIVE, *lifecycle.TERMINAL):
        raise InvalidInput(f"unknown run status {status!r}")
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "read")
        query = runs.runs_query(ws)
        job_ref = None
        if job:  # by job id alone: its index, not the workspace's whole time line
            found = runs.find_job(session, ws, job)
            job_ref = found.job_ref
            query = select(Run).where(Run.job_id == found.id)
        if status:
            query = query.where(Run.status == status)
        if after is not None:
            query = query.where(tuple_(Run.created_at, Run.id) < after)
        rows = list(session.scalars(_newest(query, limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return {
            "runs": _as_dicts(session, rows),
            "job_ref": job_ref,
            "status": status,
            "next": (last.created_at.isoformat(), last.id) if last else None,
        }


def run_detail(ctl: Controller, principal: Principal, name: str, run_id: str) -> dict[str, Any]:
    """`usecases.runs.run_by_id` plus the job's type, for a run of this workspace."""
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "read")
        row = session.get(Run, run_id)
        if row is None or row.workspace_id != ws.id:
            raise NotFound(f"no run {run_id} in workspace {name}; the Runs page lists them")
        job = session.get(Job, row.job_id)
        assert job is not None
        job_type, job_status = job.job_type, job.status
    info = usecases.runs.run_by_id(ctl, principal, run_id)
    info.update(job_type=job_type, job_status=job_status, active=info["status"] in lifecycle.ACTIVE)
    return info


# a job -----------------------------------------------------------------------------------
def job_history(ctl: Controller, principal: Principal, name: str, job_name: str) -> dict[str, Any]:
    """A job's latest runs, the reason of its latest skip and its interval ledger."""
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "read")
        job = runs.find_job(session, ws, job_name)
        ref = job.job_ref
        mine = select(Run).where(Run.job_id == job.id)
        latest = list(session.scalars(_newest(mine, 25)))
        skipped = session.scalar(_newest(mine.where(Run.status == "skipped"), 1))
        refs = list(session.scalars(select(Job.job_ref).where(Job.workspace_id == ws.id)))
        return {
            "runs": [runs.as_dict(r, ref) for r in latest],
            "latest_skip": runs.as_dict(skipped, ref) if skipped else None,
            "ledger": _ledger(session, job),
            "app_url": _app_url(ctl, ws.name, app_name(ref, refs)),
        }


def _app_url(ctl: Controller, workspace: str, app: str) -> str | None:
    """An interactive job's URL on its own origin (None: its names make no host name)."""
    try:
        return app_origins.app_url(ctl.settings, workspace, app)
    except InvalidInput:
        return None


def app_name(job_ref: str, all_refs: list[str]) -> str:
    """An interactive job's name as an app (in its host name): the proxy's own rule."""
    return apps.path_name(job_ref, all_refs)


def _ledger(session: Session, job: Job, limit: int = 50) -> list[dict[str, Any]]:
    """The covered windows, newest first: epoch, start, end, status and the run."""
    rows = session.execute(
        select(IntervalWindow, Run.number)
        .join(Run, Run.id == IntervalWindow.run_id)
        .where(IntervalWindow.job_id == job.id)
        .order_by(IntervalWindow.epoch.desc(), IntervalWindow.start.desc())
        .limit(limit)
    )
    return [
        {
            "epoch": window.epoch,
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "status": window.status,
            "run_id": window.run_id,
            "number": number,
            "current_epoch": window.epoch == job.interval_epoch,
        }
        for window, number in rows
    ]


# deployments -----------------------------------------------------------------------------
def deployment_diff(
    ctl: Controller, principal: Principal, name: str, old: str, new: str
) -> dict[str, Any]:
    """What changed from deployment version `old` to `new`: files and the job plan."""
    with ctl.db.session() as session:
        usecases.access.workspace(session, principal, name, "read")
    repo = usecases.access.repo(ctl, name)
    before, after = gitstore.version_info(repo, old), gitstore.version_info(repo, new)
    plan = planning.plan(
        usecases.deployments.manifest_at(repo, before.sha),
        usecases.deployments.manifest_at(repo, after.sha),
    )
    files = [
        p
        for p in gitstore.changed_paths(repo, before.sha, after.sha)
        if not p.startswith(gitstore.CONFIG + "/")
    ]
    return {
        "old": before.as_dict(),
        "new": after.as_dict(),
        "files": files,
        "plan": plan.as_dict(),
        "changed_fields": {c.job_ref: list(c.changed_fields) for c in plan.changes},
        "field_changes": plantext.field_changes(plan),
        "summary": plan.summary(),
    }


# pipelines -------------------------------------------------------------------------------
def pipelines(
    ctl: Controller, principal: Principal, name: str, scan: int = 200
) -> list[dict[str, Any]]:
    """Each pipeline the workspace's runs reported: its newest schemas (from dlt's `state`
    payload: tables, columns, types) and its recent loads (from the `trace` payloads)."""
    with ctl.db.session() as session:
        ws = usecases.access.workspace(session, principal, name, "read")
        found: dict[str, dict[str, Any]] = {}
        for body, _run in _payloads(session, ws, "state", scan):
            pipeline = str(body.get("pipeline_name") or "?")
            if pipeline not in found:
                found[pipeline] = _pipeline(pipeline, body)
        for body, run in _payloads(session, ws, "trace", scan):
            pipeline = str(body.get("pipeline_name") or "?")
            entry = found.setdefault(pipeline, _pipeline(pipeline, {}))
            if len(entry["loads"]) < 10:
                (summary,) = beacon.load_summary([body])
                entry["loads"].append({**summary, "run": run})
    return [found[k] for k in sorted(found)]


def _payloads(
    session: Session, ws: Workspace, kind: str, limit: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rows = session.execute(
        select(BeaconPayload.body, Run.id, Run.number, Job.job_ref)
        .join(Run, Run.id == BeaconPayload.run_id)
        .join(Job, Job.id == Run.job_id)
        .where(Run.workspace_id == ws.id, BeaconPayload.kind == kind)
        .order_by(BeaconPayload.id.desc())
        .limit(limit)
    )
    return [
        (dict(body), {"run_id": run_id, "number": number, "job_ref": ref})
        for body, run_id, number, ref in rows
    ]


def _pipeline(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "pipeline": name,
        "destination": state.get("destination_name"),
        "dataset": state.get("dataset_name"),
        "schemas": [schema_tables(s) for s in state.get("schemas") or [] if isinstance(s, dict)],
        "loads": [],
    }


def schema_tables(schema: dict[str, Any]) -> dict[str, Any]:
    """A dlt schema as tables of columns (name, type, nullable, key), dlt's own tables last."""
    tables = []
    for table_name, table in (schema.get("tables") or {}).items():
        if not isinstance(table, dict):
            continue
        columns = [
            {
                "name": column_name,
                "data_type": column.get("data_type"),
                "nullable": column.get("nullable", True),
                "primary_key": bool(column.get("primary_key")),
            }
            for column_name, column in (table.get("columns") or {}).items()
            if isinstance(column, dict)
        ]
        tables.append(
            {
                "name": table_name,
                "write_disposition": table.get("write_disposition"),
                "parent": table.get("parent"),
                "internal": str(table_name).startswith("_dlt"),
                "columns": columns,
            }
        )
    tables.sort(key=lambda t: (t["internal"], t["name"]))
    return {"name": schema.get("name"), "version": schema.get("version"), "tables": tables}
