"""The apps part of the JSON API: serve an app (start it or find it running), list apps,
and make, list and revoke public links. Thin routes over `controller.app_service`; the URLs
it hands out are the apps' own origins (`controller.app_origins`)."""

from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, Field

from dockyard.controller import app_service, auth
from dockyard.controller.assembly import Controller
from dockyard.web import api_models as M
from dockyard.web.deps import ERRORS, ApiRouter, PathNumber, controller, principal

router = ApiRouter(prefix="/api/v1/workspaces/{ws}/apps", responses=ERRORS)
Ctl = Annotated[Controller, Depends(controller)]
Who = Annotated[auth.Principal, Depends(principal)]


class LinkIn(BaseModel):
    note: str | None = Field(default=None, max_length=200)


@router.get("", response_model=list[M.AppListed])
def list_apps(ws: str, ctl: Ctl, who: Who) -> list[dict[str, Any]]:
    """The workspace's apps (interactive jobs): URL, status, running run, public links."""
    return app_service.list_apps(ctl, who, ws)


@router.post("/{job}", response_model=M.AppServed)
def serve(ws: str, job: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Start the app, or find its running instance; `url` answers once it runs."""
    return app_service.serve(ctl, who, ws, job)


@router.post("/{job}/links", status_code=201, response_model=M.LinkCreated)
def create_link(
    ws: str, job: str, ctl: Ctl, who: Who, body: LinkIn | None = None
) -> dict[str, Any]:
    """A public link to the app (its URL is shown once)."""
    note = body.note if body else None
    return app_service.create_link(ctl, who, ws, job, note)


@router.get("/{job}/links", response_model=list[M.Link])
def list_links(ws: str, job: str, ctl: Ctl, who: Who) -> list[dict[str, Any]]:
    return app_service.list_links(ctl, who, ws, job)


@router.delete("/{job}/links", response_model=M.LinksRevoked)
def revoke_all_links(ws: str, job: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return app_service.revoke_links(ctl, who, ws, job, None)


@router.delete("/{job}/links/{link_id}", response_model=M.LinksRevoked)
def revoke_link(ws: str, job: str, link_id: PathNumber, ctl: Ctl, who: Who) -> dict[str, Any]:
    return app_service.revoke_links(ctl, who, ws, job, link_id)
