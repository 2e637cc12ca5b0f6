"""The overview, the jobs list (grouped by tag, filtered) and a job's page with its actions:
run now, pause and resume its schedule; for an app, its public links (list, create, revoke)."""

import contextlib
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dockyard.controller import app_service, dashboard, usecases
from dockyard.errors import Forbidden
from dockyard.web import deps, origins, sessions
from dockyard.web.pages import render
from dockyard.web.pages.render import CheckedForm, Who

router = APIRouter(prefix="/ui/w/{ws}", include_in_schema=False)
PAGE = 200  # jobs (tag entries) per page


def job_url(ws: str, job_ref: str) -> str:
    return f"/ui/w/{quote(ws, safe='')}/jobs/{quote(job_ref, safe='')}"


# overview --------------------------------------------------------------------------------
@router.get("")
def overview(ws: str, request: Request, who: Who) -> HTMLResponse:
    data = dashboard.overview(render.controller(request), who, ws)
    return render.full(
        request,
        "overview.html",
        who,
        ws,
        "overview",
        data=data,
        partials={"overview-live": "_overview_live.html"},
    )


# the jobs list ---------------------------------------------------------------------------
@router.get("/jobs")
def jobs(
    ws: str,
    request: Request,
    who: Who,
    q: str = "",
    tag: str = "",
    type: str = "",
    state: str = "active",
    offset: deps.QueryOffset = 0,
) -> HTMLResponse:
    state = state if state in dashboard.JOB_STATES else "active"
    filters = dashboard.JobFilter(q, tag, type, state)
    data = dashboard.jobs_page(render.controller(request), who, ws, filters, offset, PAGE)
    query = urlencode({k: v for k, v in (("q", q), ("tag", tag), ("type", type)) if v})
    query += f"&state={state}" if state != "active" else ""
    return render.full(
        request,
        "jobs.html",
        who,
        ws,
        "jobs",
        filters=filters,
        data=data,
        query=query.lstrip("&"),
        partials={"jobs-table": "_jobs_table.html"},
    )


# one job ---------------------------------------------------------------------------------
@router.get("/jobs/{job}")
def job_page(ws: str, job: str, request: Request, who: Who) -> HTMLResponse:
    return _job_page(request, who, ws, job)


def _job_page(
    request: Request, who: Who, ws: str, job: str, created: dict[str, Any] | None = None
) -> HTMLResponse:
    ctl = render.controller(request)
    info = usecases.jobs.job_info(ctl, who, ws, job)
    history = dashboard.job_history(ctl, who, ws, info["job_ref"])
    links = None  # not an app, or a token that may not manage its links
    if info["job_type"] == "interactive" and info["status"] == "active":
        with contextlib.suppress(Forbidden):
            links = app_service.list_links(ctl, who, ws, info["job_ref"])
    return render.full(
        request,
        "job.html",
        who,
        ws,
        "jobs",
        job=info,
        history=history,
        links=links,
        created_link=created,
    )


@router.post("/jobs/{job}/run")
def run_now(ws: str, job: str, request: Request, who: Who, form: CheckedForm) -> Response:
    """Start the job now (its manual trigger); shows the run it made."""
    ctl = render.controller(request)
    result = usecases.runs.trigger(ctl, who, ws, [job], refresh=form.get("refresh") == "on")
    (made,) = result["triggered"]
    return render.see_other(f"/ui/w/{quote(ws, safe='')}/runs/{quote(made['run_id'], safe='')}")


@router.post("/jobs/{job}/pause")
def pause(ws: str, job: str, request: Request, who: Who, form: CheckedForm) -> Response:
    info = usecases.jobs.pause_job(render.controller(request), who, ws, job, paused=True)
    return render.see_other(job_url(ws, info["job_ref"]))


@router.post("/jobs/{job}/resume")
def resume(ws: str, job: str, request: Request, who: Who, form: CheckedForm) -> Response:
    info = usecases.jobs.pause_job(render.controller(request), who, ws, job, paused=False)
    return render.see_other(job_url(ws, info["job_ref"]))


# an app's public links -------------------------------------------------------------------
@router.post("/jobs/{job}/links")
def create_link(ws: str, job: str, request: Request, who: Who, form: CheckedForm) -> HTMLResponse:
    """Makes a public link and shows its URL, this once (only the token's hash is kept).
    Minting a credential takes the CSRF token and a same-origin `Origin` header both."""
    if not sessions.bearer(request):
        origins.check_same_origin(request, "making a public link")
    note = form.get("note", "").strip()[:200] or None
    created = app_service.create_link(render.controller(request), who, ws, job, note)
    return _job_page(request, who, ws, job, created)


@router.post("/jobs/{job}/links/{link_id}/revoke")
def revoke_link(
    ws: str, job: str, link_id: deps.PathNumber, request: Request, who: Who, form: CheckedForm
) -> Response:
    """Revokes the link: new requests through it are refused and open connections closed."""
    result = app_service.revoke_links(render.controller(request), who, ws, job, link_id)
    ref = result["revoked"][0]["job_ref"] if result["revoked"] else job
    return render.see_other(job_url(ws, ref))
