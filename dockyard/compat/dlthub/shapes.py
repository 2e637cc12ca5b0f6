"""dockyard's rows in the dlthub client's response models (its `_gen/api/models`).

Every key the client's `from_dict` requires is present (nullable ones as null); datetimes carry
their offset; ids are `ids`' UUIDs. A job's `job_definition` is dlt's own manifest entry, as
dockyard stored it at deploy, which is what the client parses strictly.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard.clock import isoformat
from dockyard.compat.dlthub import ids
from dockyard.controller import dltadapter, manifests, runtime_config
from dockyard.controller.store.models import Job, Run, Workspace

EPOCH = "1970-01-01T00:00:00+00:00"
DATAPLANE = "dockyard"
PROVIDER = "local"
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    """What every shape of one workspace needs: its row's identity and the URLs."""

    ws_id: int
    name: str
    uuid: str
    created_at: str
    updated_at: str
    dataplane_url: str
    description: str | None = None

    @classmethod
    def of(
        cls, ws: Workspace, dataplane_url: str, description: str | None = None
    ) -> "WorkspaceView":
        created = isoformat(ws.created_at) or EPOCH
        return cls(
            ws.id,
            ws.name,
            ids.workspace_id(ws.id, ws.name),
            created,
            isoformat(ws.reconciled_at) or created,
            dataplane_url,
            description,
        )


def workspace(view: WorkspaceView) -> Json:
    return {
        "id": view.uuid,
        "name": view.name,
        "description": view.description,
        "organization_id": ids.ORGANIZATION_ID,
        "dataplane_id": DATAPLANE,
        "dataplane_url": view.dataplane_url,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
        "archived_at": None,
        "is_playground": False,
    }


def organization() -> Json:
    return {
        "id": ids.ORGANIZATION_ID,
        "name": "dockyard",
        "description": "every workspace of this dockyard server",
        "dataplane_id": DATAPLANE,
        "created_at": EPOCH,
        "updated_at": EPOCH,
    }


def job(view: WorkspaceView, row: Job, version: int, profile: str) -> Json:
    """`DetailedJobResponse` (and `JobResponse`, its subset)."""
    definition = row.definition
    deliver = definition.get("deliver") or {}
    return {
        "id": ids.job_id(view.ws_id, row.id, row.job_ref),
        "job_ref": row.job_ref,
        "job_definition": definition,
        "job_definition_engine_version": int(definition.get("engine_version") or 2),
        "job_definition_hash": row.fingerprint,
        "job_type": row.job_type,
        "job_url": None,
        "public_url": None,
        "profile": profile,
        "version": version,
        "workspace_id": view.uuid,
        "created_by": ids.NO_ONE,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "name": dltadapter.short_name(row.job_ref),
        "description": definition.get("description"),
        "deployment_module": None,
        "default_trigger": dltadapter.default_trigger(definition),
        "pipeline_name": deliver.get("pipeline_name") if isinstance(deliver, dict) else None,
        "triggers": dltadapter.expand_triggers(definition),
        "freshness": list(definition.get("freshness") or []),
        "is_archived": row.status != "active",
        "is_paused": row.paused_at is not None,
    }


def planned_job(view: WorkspaceView, definition: Json, now: datetime) -> Json:
    """A job a dry run would add: no row yet, so a placeholder id and the time now (the
    client only prints its selector and default trigger)."""
    ref = str(definition.get("job_ref") or "")
    entry = definition.get("entry_point") or {}
    row = Job(
        id=0,
        job_ref=ref,
        job_type=str(entry.get("job_type") or "batch") if isinstance(entry, dict) else "batch",
        status="active",
        definition=definition,
        fingerprint=manifests.job_fingerprint(definition),
        created_at=now,
        updated_at=now,
        paused_at=None,
    )
    return job(view, row, 0, "prod")


def job_version(view: WorkspaceView, row: Job, version: int, profile: str, max_s: float) -> Json:
    job_uuid = ids.job_id(view.ws_id, row.id, row.job_ref)
    return {
        "id": ids.job_version_id(job_uuid, row.fingerprint),
        "job_id": job_uuid,
        "job_ref": row.job_ref,
        "job_definition": row.definition,
        "job_definition_engine_version": int(row.definition.get("engine_version") or 2),
        "job_definition_hash": row.fingerprint,
        "job_type": row.job_type,
        "max_run_time_seconds": int(max_s),
        "profile": profile,
        "provider": PROVIDER,
        "version": version,
        "created_by": ids.NO_ONE,
        "created_at": isoformat(row.updated_at),
        "updated_at": isoformat(row.updated_at),
    }


def job_profile(row: Job, config_names: list[str]) -> str:
    """The profile the job's runs get (`runtime_config.profile`, as the lifecycle decides)."""
    return runtime_config.profile(row.definition, config_names)


def run(view: WorkspaceView, row: Run, job_row: Job, version: int, job_profile: str) -> Json:
    """`DetailedJobRunResponse`: the run with its job and job version in full."""
    job_json = job(view, job_row, version, job_profile)
    version_json = job_version(view, job_row, version, job_profile, row.timeout_s)
    return {**run_brief(view, row, job_row), "job": job_json, "job_version": version_json}


def run_brief(view: WorkspaceView, row: Run, job_row: Job) -> Json:
    """`JobRunResponse` (without the job and its version; what a trigger answers)."""
    ws = view.ws_id
    job_uuid = ids.job_id(ws, job_row.id, job_row.job_ref)
    return {
        "id": row.id,
        "number": row.number,
        "status": ids.status(row.status),
        "trigger": row.trigger,
        "profile": row.profile or "prod",
        "job_id": job_uuid,
        "job_version_id": ids.job_version_id(job_uuid, job_row.fingerprint),
        "deployment_id": ids.deployment_id(ws, row.deployment_version or ""),
        "configuration_id": ids.configuration_id(ws, row.configuration_version or ""),
        "workspace_id": view.uuid,
        "started_at": isoformat(row.started_at),
        "finished_at": isoformat(row.finished_at),
        "duration_seconds": _duration(row.started_at, row.finished_at),
        "logs_url": None,
        "triggered_by": None,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.finished_at or row.started_at or row.created_at),
        "interval_start": isoformat(row.interval_start),
        "interval_end": isoformat(row.interval_end),
        "previous_job_run_id": row.rerun_of,
        "pipeline_run_summaries": [],
    }


def _duration(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class VersionView:
    """One deployment or configuration version: a commit of the workspace's repository."""

    sha: str
    number: int  # its 1-based place among the versions of its kind, oldest first
    created_at: str
    file_count: int
    size_bytes: int
    content_hash: str
    requirements_bytes: int = 0
    profiles: tuple[str, ...] = ()


def deployment(view: WorkspaceView, version: VersionView) -> Json:
    return {
        **_version(view, version, ids.deployment_id(view.ws_id, version.sha)),
        "requirements_size_bytes": version.requirements_bytes,
    }


def configuration(view: WorkspaceView, version: VersionView) -> Json:
    return {
        **_version(view, version, ids.configuration_id(view.ws_id, version.sha)),
        "profiles": list(version.profiles),
    }


def _version(view: WorkspaceView, version: VersionView, uuid: str) -> Json:
    return {
        "id": uuid,
        "version": version.number,
        "content_hash": version.content_hash,
        "file_count": version.file_count,
        "size_bytes": version.size_bytes,
        "created_by": ids.NO_ONE,
        "created_at": version.created_at,
        "updated_at": version.created_at,
        "workspace_id": view.uuid,
    }


def page(items: list[Json], limit: int, offset: int, total: int) -> Json:
    return {"items": items, "limit": limit, "offset": offset, "total": total, "next_cursor": None}
