"""What every dashboard page shares: the Jinja environment, the page context (who is asking,
the workspace selector, the CSRF token), form parsing, redirects and error pages.

Pages are rendered on the server; htmx swaps partials for the live parts. The environment is
built once per app (`install`), never at import time.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, unquote

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dockyard import __version__
from dockyard.controller import auth, dltadapter, usecases
from dockyard.controller.assembly import Controller
from dockyard.errors import DockyardError, InvalidInput, Unauthorized
from dockyard.web import deps, formatting, origins, sessions

WEB = Path(__file__).resolve().parent.parent
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"
MAX_FORM_FIELDS = 100  # the dashboard's forms have a handful
SECTIONS = ("overview", "jobs", "runs", "deployments", "configuration", "pipelines", "settings")
HEADERS = {
    # scripts and styles only from /ui/static; no framing, forms post only here
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=formatting.duration,
        when=formatting.when,
        sha=formatting.short_sha,
        status_class=formatting.status_class,
        trigger=lambda t: formatting.trigger_words(t, dltadapter.humanize_trigger(t)),
    )
    env.globals.update(
        version=__version__,
        trigger_words=formatting.trigger_words,
        quote=lambda text: quote(str(text), safe=""),
    )
    return env


def install(app: FastAPI) -> None:
    app.state.templates = make_environment()


def controller(request: Request) -> Controller:
    return deps.controller(request)


Who = Annotated[auth.Principal, Depends(sessions.require)]


@dataclass(frozen=True, slots=True)
class Page:
    """The context every full page gets."""

    principal: auth.Principal | None
    workspace: str | None
    workspaces: list[str]
    section: str
    csrf: str
    now: datetime

    @property
    def can_deploy(self) -> bool:
        return self.principal is not None and self.principal.role in auth.ROLES[1:]

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.role == "admin"

    def url(self, section: str = "overview") -> str:
        base = f"/ui/w/{quote(self.workspace or '', safe='')}"
        return base if section == "overview" else f"{base}/{section}"


def page(request: Request, who: auth.Principal | None, workspace: str | None, section: str) -> Page:
    ctl = controller(request)
    names = [w["name"] for w in usecases.workspaces.list_workspaces(ctl, who)] if who else []
    csrf = sessions.csrf_token(request) if who else ""
    return Page(who, workspace, names, section, csrf, ctl.clock.now())


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    env: jinja2.Environment = request.app.state.templates
    body = env.get_template(template).render(
        request=request,
        ago=lambda value: formatting.ago(value, context["page"].now),
        took=lambda run: formatting.run_duration(run, context["page"].now),
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers={**HEADERS, **(headers or {})})


def full(
    request: Request,
    template: str,
    who: auth.Principal,
    workspace: str | None,
    section: str,
    **context: Any,
) -> HTMLResponse:
    """A whole page, or for an htmx request aimed at one of its `partials` (element id →
    template) just that part."""
    ctx = {"page": page(request, who, workspace, section), **context}
    partials: dict[str, str] = context.get("partials") or {}
    target = request.headers.get("hx-target", "")
    if is_htmx(request) and target in partials:
        return render(request, partials[target], ctx)
    response = render(request, template, ctx)
    if workspace is not None:
        remember_workspace(response, request, workspace)
    return response


LAST_WORKSPACE = "dockyard_ws"
LAST_WORKSPACE_S = 365 * 24 * 3600


def remember_workspace(response: Response, request: Request, workspace: str) -> None:
    """The workspace last shown, so `/ui/` (after login too) opens it again. Only a hint:
    `last_workspace` keeps it only when the token may see that workspace."""
    response.set_cookie(
        LAST_WORKSPACE,
        quote(workspace, safe=""),
        max_age=LAST_WORKSPACE_S,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=origins.is_https(request),
    )


def last_workspace(request: Request, names: list[str]) -> str | None:
    """The remembered workspace if it is one of `names` (those the token may see)."""
    raw = request.cookies.get(LAST_WORKSPACE, "")[:1024]
    name = unquote(raw)
    return name if name in names else None


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def see_other(url: str) -> RedirectResponse:
    """After a form post: go (GET) to `url`."""
    return RedirectResponse(url, status_code=303)


# forms -----------------------------------------------------------------------------------
async def form_data(request: Request) -> dict[str, str]:
    """An url-encoded form body (the only kind the dashboard posts), last value per field.

    Starlette's form parser (`request.form()`, multipart included) is not used: the body is
    capped before it is read (`web/limits.py`, DOCKYARD_MAX_FORM_BYTES) and parsed here, with
    at most `MAX_FORM_FIELDS` fields."""
    body = await request.body()
    if len(body) > controller(request).settings.max_form_bytes:  # a backstop, see above
        raise InvalidInput("the form is too large")
    try:
        fields = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError as exc:
        raise InvalidInput(f"the form has more than {MAX_FORM_FIELDS} fields") from exc
    return {name: values[-1] for name, values in fields.items()}


async def checked_form(request: Request) -> dict[str, str]:
    """The form of a state-changing request, refused without the session's CSRF token."""
    data = await form_data(request)
    sessions.check_csrf(request, data.get(sessions.CSRF_FIELD))
    return data


Form = Annotated[dict[str, str], Depends(form_data)]
CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


# errors ----------------------------------------------------------------------------------
def login_url(request: Request) -> str:
    """The login page, coming back here afterwards (for a page request; else the start)."""
    here = "/ui/"
    if request.method == "GET" and not is_htmx(request):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/ui/login?next={quote(here, safe='')}"


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/ui/"
    if any(ord(c) < 33 or c == "\\" for c in target):  # browsers drop tabs: "/\t/host"
        return "/ui/"
    return target


def error_response(request: Request, exc: DockyardError, status_code: int) -> Response:
    """A page's error: the login page for a missing session, else a one-line message."""
    if isinstance(exc, Unauthorized) and request.url.path != "/ui/login":
        target = login_url(request)
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    return error_page(request, exc.message, status_code)


def error_page(request: Request, message: str, status_code: int) -> HTMLResponse:
    try:
        who = sessions.principal_or_none(request)
    except DockyardError:
        who = None
    workspace = request.path_params.get("ws")
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 400: "Bad request"}
    context = {
        "page": page(request, who, workspace if isinstance(workspace, str) else None, ""),
        "title": titles.get(status_code, "Error"),
        "message": message,
        "status_code": status_code,
    }
    return render(request, "error.html", context, status_code=status_code)
