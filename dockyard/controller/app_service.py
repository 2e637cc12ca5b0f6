"""Use cases behind the apps API and the proxy: who may open, serve and share an app.

Opening an app (and so starting it on demand) needs the `read` role on its workspace, the
same as seeing it; making, listing and revoking public links needs `deploy`. Every app has
an origin of its own (`app_origins`): the proxy finds an app by its host label, the API
hands out its URL.
"""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.controller import app_origins, apps, audit, auth, links, runs, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Job, PublicLink, Run, Workspace
from dockyard.errors import Conflict, InvalidInput, NotFound

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
    locate = _locate(principal, ws_name, job_name, "read")
    return ctl.apps.recent.put(key, ctl.apps.open(locate, start, _by(ctl, principal, start)))


def open_by_label(
    ctl: Controller, principal: Principal, label: str, start: bool = True
) -> apps.App:
    """The app whose host label this is (`<app>--<ws>`), for the proxy on its origin."""
    key = ("label", label)
    recent = ctl.apps.recent.get(key)
    if recent is not None:
        principal.require("read", recent.workspace_id)
        return recent
    locate = _locate_label(principal, label)
    return ctl.apps.recent.put(key, ctl.apps.open(locate, start, _by(ctl, principal, start)))


def _by(ctl: Controller, principal: Principal, start: bool) -> str | None:
    """Who asks for the app (a run it starts says so): the session's or request's token."""
    if not start:
        return None
    with ctl.db.session() as session:
        return audit.token(session, principal.token_id).label


def _locate_label(principal: Principal, label: str) -> apps.Locate:
    def locate(session: Session) -> tuple[Workspace, Job]:
        found = find_label(session, label)
        if found is None:
            principal.require("read", -1)  # a token limited to one workspace learns nothing
            raise NotFound(
                f"no app at this address ({label}); `dockyard app list` shows the apps and"
                " their URLs"
            )
        principal.require("read", found[0].id)
        return found

    return locate


def find_label(session: Session, label: str) -> tuple[Workspace, Job] | None:
    """The active app whose host label is `label`. Labels are read back by trying each `--`
    as the separator; two apps that map to one label are refused (rename one)."""
    found: list[tuple[Workspace, int, str]] = []
    everywhere = list(session.scalars(select(Workspace)))
    for app_part, ws_part in app_origins.candidates(label):
        for ws in (w for w in everywhere if app_origins.dns_name(w.name) == ws_part):
            rows = session.execute(
                select(Job.id, Job.job_ref, Job.job_type, Job.status).where(
                    Job.workspace_id == ws.id
                )
            ).all()
            refs = [row.job_ref for row in rows]
            found += [
                (ws, row.id, row.job_ref)
                for row in rows
                if row.job_type == "interactive"
                and row.status == "active"
                and app_origins.dns_name(apps.path_name(row.job_ref, refs)) == app_part
            ]
    if len(found) > 1:
        names = ", ".join(f"{ref} in {ws.name}" for ws, _, ref in found)
        raise Conflict(f"apps {names} share the host name {label}; rename one of them")
    if not found:
        return None
    job = session.get(Job, found[0][1])
    return (found[0][0], job) if job is not None else None


def label_of(app: apps.App) -> str:
    """The app's host label (InvalidInput when its names cannot make one)."""
    return app_origins.label(app.workspace, app.name)


def url_of(ctl: Controller, app: apps.App) -> str:
    return app_origins.domain(ctl.settings).origin(label_of(app)) + "/"


def open_link(
    ctl: Controller, token: str, start: bool = True, label: str | None = None
) -> tuple[apps.App, int]:
    """The app a public link serves, and the link's id; NotFound for an unknown or revoked
    link (the same answer for both: a link's existence is not revealed), and, given the
    `label` of the host it was asked on, for a link to another app. The link itself is
    looked up on every request, so a revoked link is refused at once."""
    gone = NotFound("this link does not exist or was revoked")
    with ctl.db.session() as session:
        link = links.resolve(session, token)
        if link is None:
            raise gone
        link_id, ws_id, job_id = link.id, link.workspace_id, link.job_id
    recent = ctl.apps.recent.get(("job", job_id))
    if recent is not None:
        if label is not None and _label_or_none(recent.workspace, recent.name) != label:
            raise gone
        return recent, link_id

    def locate(session: Session) -> tuple[Workspace, Job]:
        ws = session.get(Workspace, ws_id)
        job = session.get(Job, job_id)
        if ws is None or job is None or job.status != "active":
            raise gone
        if label is not None and _label_or_none(ws.name, apps.app_name(session, ws, job)) != label:
            raise gone  # checked before the app is started
        return ws, job

    app = ctl.apps.open(locate, start, f"public link #{link_id}")
    return ctl.apps.recent.put(("job", job_id), app), link_id


def _label_or_none(workspace: str, app: str) -> str | None:
    try:
        return app_origins.label(workspace, app)
    except InvalidInput:
        return None


def serve(ctl: Controller, principal: Principal, ws_name: str, job_name: str) -> dict[str, Any]:
    """Start the app (or find its running instance): what `dockyard serve` and the
    dashboard's button call. The app may still be starting; its URL answers once it runs."""
    app = open_app(ctl, principal, ws_name, job_name, start=False)
    url_of(ctl, app)  # an app without a host name is not started: it could not be opened
    app = open_app(ctl, principal, ws_name, job_name)
    with ctl.db.session() as session:
        run = session.get(Run, app.run_id) if app.run_id else None
        run_info = runs.as_dict(run, app.job_ref) if run else None
        job = session.scalar(
            select(Job).where(Job.workspace_id == app.workspace_id, Job.job_ref == app.job_ref)
        )
        endpoint = apps.endpoint_path(job.definition) if job is not None else None
    served = _app_dict(ctl, app)
    mcp_url = served["url"] + endpoint if served["url"] and endpoint else None
    return {**served, "run": run_info, "mcp_url": mcp_url}


def _app_dict(ctl: Controller, app: apps.App) -> dict[str, Any]:
    try:
        url, problem = url_of(ctl, app), None
    except InvalidInput as exc:
        url, problem = None, exc.message
    return {
        "job_ref": app.job_ref,
        "name": app.name,
        "status": app.status,
        "reason": app.reason,
        "run_id": app.run_id,
        "number": app.number,
        "url": url,
        "url_problem": problem,
    }


def list_apps(ctl: Controller, principal: Principal, ws_name: str) -> list[dict[str, Any]]:
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
                **_app_dict(ctl, app),
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
    ctl: Controller, principal: Principal, ws_name: str, job_name: str, note: str | None
) -> dict[str, Any]:
    """A new public link, on the app's own origin (`<origin>/p/<token>/`); its token (in
    `url`) is shown this once."""
    with ctl.db.session() as session:
        job = _app_job(session, principal, ws_name, job_name)
        ws = session.get(Workspace, job.workspace_id)
        assert ws is not None
        origin = app_origins.domain(ctl.settings).origin(
            app_origins.label(ws.name, apps.app_name(session, ws, job))
        )
        clear, row = links.create(session, ws, job, note, principal.token_id)
        info = links.as_dict(row, job.job_ref)
    path = links.url_path(clear)
    return {**info, "token": clear, "path": path, "url": origin + path}


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
