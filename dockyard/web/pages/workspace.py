"""The workspace's versions and settings: deployments (and the diff of any two), the
configuration (key names, never values), pipelines, API tokens, the public key and the
executor."""

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dockyard.controller import dashboard, sealing, usecases
from dockyard.errors import Forbidden, NotFound
from dockyard.web import deps, origins, sessions
from dockyard.web.pages import render
from dockyard.web.pages.render import CheckedForm, Who

router = APIRouter(prefix="/ui/w/{ws}", include_in_schema=False)
AUDIT_PAGE = 50


@router.get("/deployments")
def deployments(ws: str, request: Request, who: Who, old: str = "", new: str = "") -> HTMLResponse:
    ctl = render.controller(request)
    versions = usecases.deployments.versions(ctl, who, ws, "deployment")
    diff = dashboard.deployment_diff(ctl, who, ws, old, new) if old and new else None
    return render.full(
        request,
        "deployments.html",
        who,
        ws,
        "deployments",
        versions=versions,
        diff=diff,
        old=old,
        new=new,
    )


@router.get("/configuration")
def configuration(
    ws: str, request: Request, who: Who, version: str = "", against: str = ""
) -> HTMLResponse:
    ctl = render.controller(request)
    versions = usecases.deployments.versions(ctl, who, ws, "configuration")
    info = None
    if versions:
        info = sealing.configuration_info(ctl, who, ws, version or None, against or None)
    return render.full(
        request, "configuration.html", who, ws, "configuration", versions=versions, info=info
    )


@router.get("/pipelines")
def pipelines(ws: str, request: Request, who: Who) -> HTMLResponse:
    found = dashboard.pipelines(render.controller(request), who, ws)
    return render.full(request, "pipelines.html", who, ws, "pipelines", pipelines=found)


# settings --------------------------------------------------------------------------------
def _settings(
    request: Request, who: usecases.access.Principal, ws: str, **extra: Any
) -> dict[str, Any]:
    ctl = render.controller(request)
    info = usecases.workspaces.workspace_info(ctl, who, ws)
    try:
        key: dict[str, Any] | None = sealing.key_info(ctl, who, ws, "show")
    except NotFound:
        key = None
    try:
        tokens: list[dict[str, Any]] | None = usecases.tokens.list_tokens(ctl, who)
    except Forbidden:
        tokens = None  # shown as "needs an admin token"
    audit = usecases.audit.list_events(ctl, who, ws, extra.pop("audit_before", None), AUDIT_PAGE)
    return {
        "info": info,
        "key": key,
        "tokens": tokens,
        "created": None,
        "audit": audit,
        "alerts": _alerts(ctl, who, ws),
        "workers": usecases.workers.list_workers(ctl, who),
        **extra,
    }


def _alerts(ctl: Any, who: usecases.access.Principal, ws: str) -> dict[str, Any] | None:
    """The alert channels and their newest deliveries (admin), else None."""
    try:
        return {
            "channels": usecases.alerts.list_channels(ctl, who, ws),
            "deliveries": usecases.alerts.deliveries(ctl, who, ws, 20),
        }
    except Forbidden:
        return None  # shown as "needs an admin token"


def settings_page(
    request: Request, who: usecases.access.Principal, ws: str, **extra: Any
) -> HTMLResponse:
    """The settings page with what a form's answer shows once (web/pages/alerts.py)."""
    context = _settings(request, who, ws, **extra)
    return render.full(request, "settings.html", who, ws, "settings", **context)


@router.get("/settings")
def settings(
    ws: str, request: Request, who: Who, audit_before: deps.QueryOffset | None = None
) -> HTMLResponse:
    context = _settings(request, who, ws, audit_before=audit_before or None)
    return render.full(request, "settings.html", who, ws, "settings", **context)


@router.post("/settings/executor")
def set_executor(ws: str, request: Request, who: Who, form: CheckedForm) -> Response:
    choice = form.get("executor", "default")
    usecases.workspaces.set_executor(
        render.controller(request), who, ws, None if choice == "default" else choice
    )
    return render.see_other(f"/ui/w/{quote(ws, safe='')}/settings")


@router.post("/tokens")
def create_token(ws: str, request: Request, who: Who, form: CheckedForm) -> HTMLResponse:
    """Makes a token and shows it, this once (only its hash is kept). Minting a credential
    takes the CSRF token and a same-origin `Origin` header both."""
    if not sessions.bearer(request):
        origins.check_same_origin(request, "making a token")
    created = usecases.tokens.create_token(
        render.controller(request),
        who,
        form.get("name", "").strip() or "dashboard token",
        form.get("role", "read"),
        ws if form.get("scope") == "workspace" else None,
    )
    context = _settings(request, who, ws, created=created)
    return render.full(request, "settings.html", who, ws, "settings", **context)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    ws: str, token_id: deps.PathNumber, request: Request, who: Who, form: CheckedForm
) -> Response:
    usecases.tokens.revoke_token(render.controller(request), who, token_id)
    return render.see_other(f"/ui/w/{quote(ws, safe='')}/settings")
