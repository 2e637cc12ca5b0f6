"""Use cases behind the apps API and the proxy: who may open, serve and share an app.

Opening an app (and so starting it on demand) needs the `read` role on its workspace, the
same as seeing it; making, listing and revoking public links needs `deploy`.
"""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.controller import apps, auth, links, runs, workspaces
from dockyard.controller.core import Controller
from dockyard.controller.store.models import Job, PublicLink, Run, Workspace
from dockyard.errors import InvalidInput, NotFound

Principal = auth.Principal


def _workspace(session: Session, principal: Principal, name: str, role: str) -> Workspace:
    try:
        ws = workspaces.get(session, name)
    except NotFound:
        principal.require(role, -1)  # a token limited to one workspace learns nothing more
        raise
    principal.require(role, ws.id)
    return ws


def _locate(principal: Principal, ws_name: str, job_name: str, role: str) -> apps.Locate:
    def locate(session: Session) -> tuple[Workspace, Job]:
        ws = _workspace(session, principal, ws_name, role)
        return ws, runs.find_job(session, ws, job_name)

    return locate


def open_app(
    ctl: Controller, principal: Principal, ws_name: str, job_name: str, start: bool = True
) -> apps.App:
    """The app's instance for the proxy; started when it has none (and `start`)."""
    key = ("name", ws_name, job_name)
    recent = ctl.apps.recent.get(key)
    if recent is not None:
        principal.require("read", recent.workspace_id)
        return recent
    return ctl.apps.recent.put(
        key, ctl.apps.open(_locate(principal, ws_name, job_name, "read"), start)
    )


def open_link(ctl: Controller, token: str, start: bool = True) -> tuple[apps.App, int]:
    """The app a public link serves, and the link's id; NotFound for an unknown or revoked
    link (the same answer for both: a link's existence is not revealed). The link itself is
    looked up on every request, so a revoked link is refused at once."""
    with ctl.db.session() as session:
        link = links.resolve(session, token)
        if link is None:
            raise NotFound("this link does not exist or was revoked")
        link_id, ws_id, job_id = link.id, link.workspace_id, link.job_id
    recent = ctl.apps.recent.get(("job", job_id))
    if recent is not None:
        return recent, link_id

    def locate(session: Session) -> tuple[Workspace, Job]:
        ws = session.get(Workspace, ws_id)
        job = session.get(Job, job_id)
        if ws is None or job is None or job.status != "active":
            raise NotFound("this link does not exist or was revoked")
        return ws, job

    return ctl.apps.recent.put(("job", job_id), ctl.apps.open(locate, start)), link_id


def serve(
    ctl: Controller, principal: Principal, ws_name: str, job_name: str, base_url: str
) -> dict[str, Any]:
    """Start the app (or find its running instance): what `dockyard serve` and the
    dashboard's button call. The app may still be starting; its URL answers once it runs."""
    app = open_app(ctl, principal, ws_name, job_name)
    with ctl.db.session() as session:
        run = session.get(Run, app.run_id) if app.run_id else None
        run_info = runs.as_dict(run, app.job_ref) if run else None
    return {**_app_dict(app, base_url), "run": run_info}


def _app_dict(app: apps.App, base_url: str) -> dict[str, Any]:
    return {
        "job_ref": app.job_ref,
        "name": app.name,
        "status": app.status,
        "reason": app.reason,
        "run_id": app.run_id,
        "number": app.number,
        "path": app.path,
        "url": base_url.rstrip("/") + app.path,
    }


def list_apps(
    ctl: Controller, principal: Principal, ws_name: str, base_url: str
) -> list[dict[str, Any]]:
    """The workspace's active interactive jobs, their URL and whether they run now."""
    with ctl.db.session() as session:
        ws = _workspace(session, principal, ws_name, "read")
        jobs = [j for j in runs.jobs(session, ws) if j.job_type == "interactive"]
        link_counts = dict(
            session.execute(
                select(PublicLink.job_id, func.count())
                .where(PublicLink.workspace_id == ws.id, PublicLink.revoked_at.is_(None))
                .group_by(PublicLink.job_id)
            ).all()
        )
    out = []
    for job in jobs:
        app = ctl.apps.open(_locate(principal, ws_name, job.job_ref, "read"), start=False)
        expose = job.definition.get("expose") or {}
        out.append(
            {
                **_app_dict(app, base_url),
                "interface": expose.get("interface"),
                "category": expose.get("category"),
                "public_links": link_counts.get(job.id, 0),
            }
        )
    return out


# public links -------------------------------------------------------------------------------
def _app_job(session: Session, principal: Principal, ws_name: str, job_name: str) -> Job:
    ws = _workspace(session, principal, ws_name, "deploy")
    job = runs.find_job(session, ws, job_name)
    if job.job_type != "interactive":
        raise InvalidInput(f"job {job.job_ref} is not an app (interactive job); nothing to share")
    return job


def create_link(
    ctl: Controller,
    principal: Principal,
    ws_name: str,
    job_name: str,
    note: str | None,
    base_url: str,
) -> dict[str, Any]:
    """A new public link; its token (in `url`) is shown this once."""
    with ctl.db.session() as session:
        job = _app_job(session, principal, ws_name, job_name)
        ws = session.get(Workspace, job.workspace_id)
        assert ws is not None
        clear, row = links.create(session, ws, job, note, principal.token_id)
        info = links.as_dict(row, job.job_ref)
    path = links.url_path(clear)
    return {**info, "token": clear, "path": path, "url": base_url.rstrip("/") + path}


def list_links(
    ctl: Controller, principal: Principal, ws_name: str, job_name: str
) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        job = _app_job(session, principal, ws_name, job_name)
        return [links.as_dict(r, job.job_ref) for r in links.for_job(session, job)]


def revoke_links(
    ctl: Controller, principal: Principal, ws_name: str, job_name: str, link_id: int | None
) -> dict[str, Any]:
    """Revoke one link (or all of the app's): new requests are refused at once, and open
    connections through them are closed."""
    with ctl.db.session() as session:
        job = _app_job(session, principal, ws_name, job_name)
        revoked = [links.as_dict(r, job.job_ref) for r in links.revoke(session, job, link_id)]
    closed = sum(ctl.apps.connections.revoke(r["id"]) for r in revoked)
    return {"revoked": revoked, "closed_connections": closed}
