"""The dashboard's side of apps, which live on origins of their own (`web/app_host.py`).

- `/ui/app-session?app=<label>&next=<path>`: the first leg of signing in to an app. The
  viewer's dashboard session (and `read` on the app's workspace) is checked here, on the
  dashboard's origin, and a one-time code bound to that app goes on to the app's origin;
  the session cookie itself never does. It goes on by a page that navigates by itself, not
  by a redirect: when this follows the login form, a redirect would end the form's
  navigation on another origin, which the dashboard's CSP (`form-action 'self'`) stops.
- `/apps/<ws>/<app>/…` and `/p/<token>/…`, the URLs apps had when they shared the
  dashboard's origin: a redirect to the same place on the app's origin (bookmarks keep
  working). Nothing of an app is ever served on the dashboard's origin.
"""

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dockyard import errors
from dockyard.controller import app_origins, app_service, auth, links
from dockyard.controller.assembly import Controller
from dockyard.web import app_answers as answers
from dockyard.web import app_host, app_sessions, sessions

router = APIRouter(include_in_schema=False)
MOVED = 307  # temporary: the apps domain is a setting, it may change again
CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


def _controller(request: Request) -> Controller:
    ctl: Controller = request.app.state.controller
    return ctl


def _no_store(response: Response) -> Response:
    response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    return response


@router.get(app_sessions.START)
def start_session(request: Request, app: str = "", next: str = "/") -> Response:
    """Sign the viewer in to one app: check here, send a one-time code there."""
    who = sessions.require(request)  # without a session: the login page, then back here
    if request.headers.get("sec-fetch-mode", "navigate") != "navigate":
        raise errors.Forbidden("open an app by following a link to it, not from a script")
    ctl = _controller(request)
    label = app_service.label_of(app_service.open_by_label(ctl, who, app, start=False))
    issued = sessions.issued_at(ctl, request.cookies.get(sessions.COOKIE)) or int(time.time())
    grant = app_sessions.Grant(who.token_id, issued)
    code = request.app.state.app_codes.mint(label, grant)
    origin = app_origins.domain(ctl.settings).origin(label)
    target = app_sessions.handshake_url(origin, code, next)
    body = answers.page(f"Opening {label}…", "Signing you in to the app.", refresh=0, to=target)
    return _no_store(HTMLResponse(body, headers={"Content-Security-Policy": CSP}))


def _rest(request: Request, skip: int) -> str:
    """The raw path after its first `skip` segments, and the query (as the client sent)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    rest = "/".join(path.split("/")[skip + 1 :])
    return rest + (f"?{request.url.query}" if request.url.query else "")


def _principal(request: Request) -> auth.Principal:
    principal = sessions.principal_or_none(request)
    if principal is None:
        raise errors.Unauthorized("log in first (or send Authorization: Bearer <token>)")
    return principal


def _moved_app(request: Request, ws: str, job: str) -> str:
    ctl = _controller(request)
    app = app_service.open_app(ctl, _principal(request), ws, job, start=False)
    return app_service.url_of(ctl, app) + _rest(request, 3)


def _moved_link(request: Request, token: str) -> str:
    ctl = _controller(request)
    app, _ = app_service.open_link(ctl, token, start=False)
    return app_service.url_of(ctl, app) + links.url_path(token).lstrip("/") + _rest(request, 2)


@router.api_route("/apps/{ws}/{job}", methods=app_host.METHODS)
@router.api_route("/apps/{ws}/{job}/{rest:path}", methods=app_host.METHODS)
async def moved_app(ws: str, job: str, request: Request) -> Response:
    """An app's old URL: the same path on its own origin (for whoever may open it)."""
    try:
        target = await run_in_threadpool(_moved_app, request, ws, job)
    except errors.DockyardError as exc:
        return answers.refused(request, exc)
    return RedirectResponse(target, status_code=MOVED)


@router.api_route(links.PUBLIC_ROOT + "/{token}", methods=app_host.METHODS)
@router.api_route(links.PUBLIC_ROOT + "/{token}/{rest:path}", methods=app_host.METHODS)
async def moved_link(token: str, request: Request) -> Response:
    """A public link's old URL: the same link on its app's origin."""
    try:
        target = await run_in_threadpool(_moved_link, request, token)
    except errors.DockyardError as exc:
        return answers.refused(request, exc)
    return RedirectResponse(target, status_code=MOVED)
