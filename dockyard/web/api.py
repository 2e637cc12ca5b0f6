"""The JSON API (`/api/v1`): thin routes over `controller.usecases`, each declaring the shape
of its answer (`web/api_models.py`) so `/openapi.json` documents every field."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dockyard.controller import auth, logs, sealing, usecases
from dockyard.controller.assembly import Controller
from dockyard.errors import InvalidInput
from dockyard.web import api_models as M
from dockyard.web.deps import ERRORS, ApiRouter, PathNumber, QueryOffset, controller, principal

router = ApiRouter(prefix="/api/v1", responses=ERRORS)
Ctl = Annotated[Controller, Depends(controller)]
Who = Annotated[auth.Principal, Depends(principal)]
JSONList = list[dict[str, Any]]


class WorkspaceIn(BaseModel):
    name: str


class WorkspacePatch(BaseModel):
    executor: str | None = None


class TokenIn(BaseModel):
    name: str
    role: str = "deploy"
    workspace: str | None = None
    dlthub: bool = Field(default=False, description="a `dlt_sa_` key for the `dlthub` CLI")


class TriggerIn(BaseModel):
    selectors: list[str] = Field(min_length=1)
    refresh: bool = False
    dry_run: bool = False


class PreviewIn(BaseModel):
    jobs: list[dict[str, Any]]


class CancelIn(BaseModel):
    selectors: list[str] = Field(min_length=1)


class RollbackIn(BaseModel):
    force: bool = Field(default=False, description="roll back a workspace linked to GitHub anyway")


class GithubLinkIn(BaseModel):
    repo: str = Field(max_length=140, description="OWNER/NAME")
    branch: str = Field(default="main", max_length=255)
    path: str = Field(default="", max_length=255, description="the workspace's folder")
    api_url: str = Field(default="https://api.github.com", max_length=255)
    token: str | None = Field(
        default=None, max_length=1024, description="stored sealed, never shown again"
    )
    create_webhook: bool = Field(
        default=False, description="create the webhook on GitHub with the token, if it may"
    )
    app_id: int | None = Field(default=None, description="a GitHub App's id, instead of a token")
    private_key: str | None = Field(
        default=None, max_length=16384, description="the App's PEM key, stored sealed"
    )


@router.get("/me", response_model=M.Me)
def me(who: Who) -> dict[str, Any]:
    return {"role": who.role, "workspace_id": who.workspace_id, "token_id": who.token_id}


@router.get("/workspaces", response_model=list[M.Workspace])
def list_workspaces(ctl: Ctl, who: Who) -> JSONList:
    return usecases.workspaces.list_workspaces(ctl, who, describe=True)


@router.post("/workspaces", status_code=201, response_model=M.Workspace)
def create_workspace(body: WorkspaceIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.workspaces.create_workspace(ctl, who, body.name)


@router.get("/workspaces/{ws}", response_model=M.WorkspaceInfo)
def workspace_info(ws: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.workspaces.workspace_info(ctl, who, ws)


@router.patch("/workspaces/{ws}", response_model=M.WorkspaceSettings)
def update_workspace(ws: str, body: WorkspacePatch, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Settings of a workspace: `executor` ("local", "docker", or null for the default)."""
    return usecases.workspaces.set_executor(ctl, who, ws, body.executor)


@router.post("/workspaces/{ws}/reconcile", response_model=M.Reconciled)
def reconcile(ws: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.deployments.reconcile(ctl, who, ws)


@router.get("/workspaces/{ws}/reconciliations/{sha}", response_model=M.AppliedReconciliation)
def reconciliation(ws: str, sha: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.deployments.reconciliation(ctl, who, ws, sha)


@router.post("/workspaces/{ws}/github", status_code=201, response_model=M.GithubLinkCreated)
def link_github(ws: str, body: GithubLinkIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Link the workspace to a GitHub repository (admin) with a token or a GitHub App. The
    answer holds the webhook URL and its secret, shown this once (docs/github.md)."""
    fields = body.model_dump(include={"repo", "branch", "path", "api_url"})
    if (body.token is None) == (body.app_id is None or body.private_key is None):
        raise InvalidInput("give either a token, or a GitHub App's id and private key")
    if body.app_id is not None and body.private_key is not None:
        return usecases.github_apps.link(ctl, who, ws, fields, body.app_id, body.private_key)
    return usecases.github.link(ctl, who, ws, fields, body.token or "", body.create_webhook)


@router.delete("/workspaces/{ws}/github", response_model=M.GithubUnlinked)
def unlink_github(ws: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Remove the workspace's GitHub link (admin); its deliveries stay as history."""
    return usecases.github.unlink(ctl, who, ws)


@router.get("/tokens", response_model=list[M.Token])
def list_tokens(ctl: Ctl, who: Who) -> JSONList:
    return usecases.tokens.list_tokens(ctl, who)


@router.get("/leases", response_model=list[M.Lease])
def list_leases(ctl: Ctl, who: Who) -> JSONList:
    """The named leases of the work that must happen once across servers (admin)."""
    return usecases.leases.list_leases(ctl, who)


@router.post("/tokens", status_code=201, response_model=M.TokenCreated)
def create_token(body: TokenIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.tokens.create_token(ctl, who, body.name, body.role, body.workspace, body.dlthub)


@router.delete("/tokens/{token_id}", response_model=M.Token)
def revoke_token(token_id: PathNumber, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.tokens.revoke_token(ctl, who, token_id)


Selectors = Annotated[list[str] | None, Query(max_length=50)]


@router.get("/workspaces/{ws}/jobs", response_model=list[M.Job])
def list_jobs(
    ws: str, ctl: Ctl, who: Who, archived: bool = True, selector: Selectors = None
) -> JSONList:
    """The jobs; with `selector` (repeatable) only those dlt's selector rules pick (`tag:x`,
    `batch`, `schedule:*`, `jobs.sec.*`, a job name)."""
    picked = [s for s in selector or [] if s]
    if any(len(s) > 500 for s in picked):
        raise InvalidInput("a selector is at most 500 characters")
    return usecases.jobs.list_jobs(ctl, who, ws, include_archived=archived, selectors=picked)


@router.get("/workspaces/{ws}/jobs/{job}", response_model=M.JobInfo)
def job_info(ws: str, job: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.jobs.job_info(ctl, who, ws, job)


@router.post("/workspaces/{ws}/jobs/{job}/pause", response_model=M.Job)
def pause_job(ws: str, job: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Stop the job's timed triggers (kept across redeploys; manual runs still work)."""
    return usecases.jobs.pause_job(ctl, who, ws, job, paused=True)


@router.post("/workspaces/{ws}/jobs/{job}/resume", response_model=M.Job)
def resume_job(ws: str, job: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Fire the job's timed triggers again, from their next tick."""
    return usecases.jobs.pause_job(ctl, who, ws, job, paused=False)


@router.get("/workspaces/{ws}/jobs/{job}/runs/{number}", response_model=M.RunDetails)
def run_info(ws: str, job: str, number: PathNumber, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Run `number` of the job (0: its latest run)."""
    return usecases.runs.run_info(ctl, who, ws, job, number if number > 0 else None)


@router.post("/workspaces/{ws}/trigger", response_model=M.TriggerResult)
def trigger(ws: str, body: TriggerIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.runs.trigger(ctl, who, ws, body.selectors, body.refresh, body.dry_run)


@router.post("/workspaces/{ws}/schedule-preview", response_model=list[M.ScheduleChange])
def schedule_preview(ws: str, body: PreviewIn, ctl: Ctl, who: Who) -> JSONList:
    """What deploying these job definitions would do to their schedules (nothing written)."""
    return usecases.jobs.preview_schedules(ctl, who, ws, body.jobs)


@router.post("/workspaces/{ws}/cancel", response_model=M.CancelJobsResult)
def cancel(ws: str, body: CancelIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.runs.cancel_jobs(ctl, who, ws, body.selectors)


@router.get("/workspaces/{ws}/runs", response_model=list[M.Run])
def list_runs(
    ws: str,
    ctl: Ctl,
    who: Who,
    job: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONList:
    return usecases.runs.list_runs(ctl, who, ws, job, status, limit)


@router.get("/audit", response_model=M.AuditPage)
def audit_log(
    ctl: Ctl,
    who: Who,
    workspace: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The audit log, newest first (docs/api.md, "Audit log")."""
    return usecases.audit.list_events(ctl, who, workspace, before, limit)


@router.get("/runs/{run_id}", response_model=M.RunDetails)
def run_by_id(run_id: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.runs.run_by_id(ctl, who, run_id)


@router.get("/runs/{run_id}/logs", response_model=M.LogPage)
def run_logs(
    run_id: str,
    ctl: Ctl,
    who: Who,
    offset: QueryOffset = 0,
    tail: Annotated[int | None, Query(ge=0, le=logs.MAX_OFFSET)] = None,
    limit: Annotated[int, Query(ge=1, le=logs.READ_LINES)] = logs.READ_LINES,
    count: bool = False,
) -> dict[str, Any]:
    """A page of the run's log (at most `limit` lines and 1 MiB): from byte `offset`, or
    the last `tail` lines; go on from `next_offset` while `more`."""
    return usecases.runs.run_logs(ctl, who, run_id, offset, tail, limit, count)


@router.post("/runs/{run_id}/cancel", response_model=M.CancelRunResult)
def cancel_run(run_id: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.runs.cancel_run(ctl, who, run_id)


@router.post("/runs/{run_id}/rerun", response_model=M.Run)
def rerun(run_id: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Run a finished run again (deploy role): same job at the latest deployment, same
    trigger, refresh and window; the new run has `rerun_of` (it may be `skipped` with the
    reason, as a trigger). 409 for an active run, an archived job or an app."""
    return usecases.runs.rerun(ctl, who, run_id)


@router.get("/workspaces/{ws}/deployments", response_model=list[M.Version])
def deployments(ws: str, ctl: Ctl, who: Who) -> list[dict[str, str | None]]:
    return usecases.deployments.versions(ctl, who, ws, "deployment")


@router.get("/workspaces/{ws}/deployments/{sha}", response_model=M.Deployment)
def deployment_info(ws: str, sha: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.deployments.deployment_info(ctl, who, ws, None if sha == "latest" else sha)


@router.post("/workspaces/{ws}/deployments/{sha}/rollback", response_model=M.RollbackResult)
def rollback(
    ws: str, sha: str, ctl: Ctl, who: Who, body: RollbackIn | None = None
) -> dict[str, Any]:
    """A new commit on `main` holding deployment `sha`'s files (7 to 40 hex digits), checked
    as a pushed deploy and reconciled; the answer holds the plan (docs/cli.md)."""
    force = body.force if body is not None else False
    return usecases.deployments.rollback_to(ctl, who, ws, sha, force)


@router.get("/workspaces/{ws}/configurations", response_model=list[M.Version])
def configurations(ws: str, ctl: Ctl, who: Who) -> list[dict[str, str | None]]:
    return usecases.deployments.versions(ctl, who, ws, "configuration")


@router.get("/workspaces/{ws}/configurations/{sha}", response_model=M.Configuration)
def configuration_info(
    ws: str, sha: str, ctl: Ctl, who: Who, against: str | None = None
) -> dict[str, Any]:
    """Files, profiles and key names (never values); `changes` lists key names added,
    removed and changed since `against` (default: the previous configuration version)."""
    return sealing.configuration_info(ctl, who, ws, None if sha == "latest" else sha, against)


@router.get("/workspaces/{ws}/key", response_model=M.Key)
def workspace_key(ws: str, ctl: Ctl, who: Who, purpose: str = "show") -> dict[str, Any]:
    """The workspace's age public key (secrets are encrypted for it by `dockyard deploy`)."""
    return sealing.key_info(ctl, who, ws, purpose)


@router.post("/workspaces/{ws}/rotate-key", response_model=M.KeyRotation)
def rotate_key(ws: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """A new key pair; every secret re-encrypted for it in one commit (admin)."""
    return sealing.rotate_key(ctl, who, ws)


beacon_router = APIRouter(include_in_schema=False)


@beacon_router.put("/beacon/{token}/{kind}")
async def beacon(token: str, kind: str, request: Request, ctl: Ctl) -> dict[str, str]:
    """dlt's platform tracker PUTs JSON here without a content type or auth header. The
    token is checked before the body is read; the body's size is capped by `web/limits.py`
    (DOCKYARD_BEACON_MAX_BYTES) while it is read."""
    run_id = usecases.beacon.beacon_run(ctl, token, kind)
    raw = await request.body()
    await run_in_threadpool(usecases.beacon.record_beacon, ctl, run_id, kind, raw)
    return {"status": "ok"}
