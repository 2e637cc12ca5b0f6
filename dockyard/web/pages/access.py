"""Logging in and out of the dashboard, and where `/` and `/ui/` lead.

Logging in checks an API token once and sets the session cookie (`web/sessions.py`); the
token itself is never stored in the browser.
"""

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from dockyard.controller import usecases
from dockyard.errors import Forbidden, Unauthorized
from dockyard.web import origins, sessions
from dockyard.web.pages import render
from dockyard.web.pages.render import Form, Who

router = APIRouter()


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
def start(request: Request, who: Who) -> Response:
    """The overview of the workspace last shown in this browser, if the token may see it,
    else of the first one it may see."""
    names = [
        w["name"] for w in usecases.workspaces.list_workspaces(render.controller(request), who)
    ]
    if not names:
        context = {"page": render.page(request, who, None, "overview")}
        return render.render(request, "empty.html", context)
    name = render.last_workspace(request, names) or names[0]
    return RedirectResponse(f"/ui/w/{quote(name, safe='')}", status_code=307)


@router.get("/ui/switch", include_in_schema=False)
def switch(ws: str, section: str = "overview") -> RedirectResponse:
    """The workspace selector's target: the same section in another workspace."""
    target = f"/ui/w/{quote(ws, safe='')}"
    if section in render.SECTIONS and section != "overview":
        target += f"/{section}"
    return RedirectResponse(target, status_code=303)


@router.get("/ui/login", include_in_schema=False)
def login_page(request: Request, next: str = "/ui/") -> Response:
    if sessions.principal_or_none(request) is not None:
        return RedirectResponse(render.safe_next(next), status_code=303)
    return _login_form(request, next)


def _login_form(request: Request, next_url: str, error: str = "", status: int = 200) -> Response:
    context = {"page": render.page(request, None, None, ""), "next": next_url, "error": error}
    return render.render(request, "login.html", context, status_code=status)


@router.post("/ui/login", include_in_schema=False)
def login(request: Request, form: Form) -> Response:
    """A session is a credential: minted only for a form posted from this very origin (there
    is no session yet, hence no CSRF token, to check)."""
    origins.check_same_origin(request, "logging in")
    next_url = render.safe_next(form.get("next"))
    try:
        cookie = sessions.login(render.controller(request), form.get("token", ""))
    except Unauthorized as exc:
        return _login_form(request, next_url, exc.message, status=401)
    except Forbidden as exc:  # a worker token opens no dashboard
        return _login_form(request, next_url, exc.message, status=403)
    response = RedirectResponse(next_url, status_code=303)
    sessions.set_cookie(response, request, cookie)
    return response


@router.post("/ui/logout", include_in_schema=False)
def logout(request: Request, form: Form) -> Response:
    """Ends the session (CSRF-checked while it is valid: another site cannot log you out)."""
    if sessions.principal_or_none(request) is not None:
        sessions.check_csrf(request, form.get(sessions.CSRF_FIELD))
    response = RedirectResponse("/ui/login", status_code=303)
    sessions.clear_cookie(response)
    return response
