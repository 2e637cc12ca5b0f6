"""Apps' own origins: `http://<app>--<ws>.<apps domain>[:port]/`, on the server's port.

`HostRouter` sends a request whose host is inside the apps domain here, and every other
request to the dashboard's application: on an app's host nothing of the dashboard, the API
or git answers, and the dashboard's session cookie counts for nothing.

On an app's host:
- `/_dockyard/session?code=…&next=…`: the second leg of signing in (`web/app_sessions.py`):
  a one-time code from the dashboard becomes this origin's own cookie.
- `/p/<token>/…`: a public link to this app (a link to another app is not found here).
- everything else: the app, for the app's cookie or `Authorization: Bearer <token>`
  (`read` on its workspace). A browser without either goes to sign in on the dashboard.

A request that carries the app's cookie from another origin (an `Origin` header naming
another host, another app's included) is refused, WebSockets always: the cookie is
SameSite=Lax, and apps under one domain are the same *site*, so only this check stops a
neighbour from using it.
"""

import time

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import RedirectResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard import errors
from dockyard.controller import app_origins, app_service, auth, links
from dockyard.controller.assembly import Controller
from dockyard.settings import Settings
from dockyard.web import app_answers as answers
from dockyard.web import app_sessions, limits, origins, proxy, sessions

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
LABEL = limits.APP_LABEL  # the scope key of the app's label, set by HostRouter
LINK = links.PUBLIC_ROOT.strip("/")
router = APIRouter(include_in_schema=False)


class HostRouter:
    """ASGI middleware: a host inside the apps domain goes to `apps`, every other to `app`."""

    def __init__(self, app: ASGIApp, apps: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.apps = apps
        self.settings = settings
        self.domain = app_origins.domain(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = origins.seen_with(HTTPConnection(scope), self.settings).host
            label = self.domain.label_of(host)
            if label is not None:
                scope[LABEL] = label
                await self.apps(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create(ctl: Controller, codes: app_sessions.Codes) -> FastAPI:
    """The application that answers on apps' hosts."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.controller = ctl
    app.state.app_codes = codes

    @app.exception_handler(errors.DockyardError)
    async def _refused(request: Request, exc: errors.DockyardError) -> Response:
        return answers.refused(request, exc)

    app.include_router(router)
    # app traffic has its own cap (DOCKYARD_MAX_APP_BYTES), counted before the app sees it
    app.add_middleware(limits.BodyLimit, limits=limits.BodyLimits.from_settings(ctl.settings))
    return app


# who is asking -----------------------------------------------------------------------------
def _controller(conn: HTTPConnection) -> Controller:
    ctl: Controller = conn.app.state.controller
    return ctl


def _label(conn: HTTPConnection) -> str:
    label: str | None = conn.scope.get(LABEL)
    if label is None:  # only HostRouter sends requests here, with the label
        raise errors.NotFound("no app at this address")
    return label


def _from_cookie(conn: HTTPConnection, label: str) -> tuple[auth.Principal, str | None] | None:
    """The principal of a valid app cookie for this app, and a renewed cookie to send back
    once it has been in use a while."""
    ctl = _controller(conn)
    key, now = sessions.app_key(ctl), int(time.time())
    for value in app_sessions.cookie_values(conn.headers.get("cookie", "")):
        grant = app_sessions.read_cookie(key, label, value, now)
        principal = sessions.principal_of(ctl, grant.token_id) if grant else None
        if grant is not None and principal is not None:
            fresh = app_sessions.renewed(key, label, grant, now)
            secure = origins.is_https(conn)
            header = app_sessions.set_cookie_header(fresh, secure) if fresh else None
            return principal, header
    return None


def _open_app(conn: HTTPConnection) -> proxy.Target:
    """The app of this host for a bearer token or this app's cookie; never the dashboard's
    session cookie, never the app's cookie sent from another origin."""
    ctl, label = _controller(conn), _label(conn)
    renewal = None
    token = sessions.bearer(conn)
    if token:
        with ctl.db.session() as session:
            principal = auth.authenticate(session, token)
    else:
        if origins.is_foreign(conn):
            raise errors.Forbidden(
                f"a request from {conn.headers.get('origin')!r} may not use this app's"
                " sign-in; open the app at its own address"
            )
        found = _from_cookie(conn, label)
        if found is None:
            raise errors.Unauthorized("sign in first (or send Authorization: Bearer <token>)")
        principal, renewal = found
    app = app_service.open_by_label(ctl, principal, label)
    return proxy.Target(app, "", set_cookie=renewal)


def _open_link(conn: HTTPConnection, token: str) -> proxy.Target:
    """A public link, only on its own app's host."""
    app, link_id = app_service.open_link(_controller(conn), token, label=_label(conn))
    return proxy.Target(app, f"{links.PUBLIC_ROOT}/{token}", link_id)


def _sign_in(request: Request) -> str:
    settings = _controller(request).settings
    return app_sessions.start_url(settings.base_url, _label(request), answers.here(request))


# the second leg of signing in ----------------------------------------------------------------
@router.get(app_sessions.HANDSHAKE)
def handshake(request: Request, code: str = "", next: str = "/") -> Response:
    """A one-time code from the dashboard becomes this origin's own cookie."""
    label = _label(request)
    grant = request.app.state.app_codes.take(code, label)
    if grant is None:
        message = "this sign-in link was used already or has expired; open the app again"
        return answers.problem(request, 400, message)
    value = app_sessions.cookie_value(
        sessions.app_key(_controller(request)), label, grant, int(time.time())
    )
    response = RedirectResponse(app_sessions.safe_path(next), status_code=303)
    response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    response.raw_headers.append(
        (b"set-cookie", app_sessions.set_cookie_header(value, origins.is_https(request)).encode())
    )
    return response


# public links --------------------------------------------------------------------------------
@router.api_route("/" + LINK + "/{token}", methods=METHODS)
async def link_root(token: str, request: Request) -> Response:
    if not token.startswith(links.TOKEN_PREFIX):
        return await app_http(request)
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(request.url.path + "/" + query, status_code=307)


@router.api_route("/" + LINK + "/{token}/{rest:path}", methods=METHODS)
async def link_http(token: str, rest: str, request: Request) -> Response:
    if not token.startswith(links.TOKEN_PREFIX):
        return await app_http(request)
    mount = f"{links.PUBLIC_ROOT}/{token}"
    return await proxy.forward_http(request, lambda: _open_link(request, token), mount)


@router.websocket("/" + LINK + "/{token}/{rest:path}")
async def link_websocket(token: str, rest: str, websocket: WebSocket) -> None:
    if not token.startswith(links.TOKEN_PREFIX):
        await app_websocket(websocket)
        return
    mount = f"{links.PUBLIC_ROOT}/{token}"
    await proxy.forward_websocket(websocket, lambda: _open_link(websocket, token), mount)


# the app ---------------------------------------------------------------------------------------
@router.api_route("/{rest:path}", methods=METHODS)
async def app_http(request: Request) -> Response:
    return await proxy.forward_http(request, lambda: _open_app(request), "", _sign_in)


@router.websocket("/{rest:path}")
async def app_websocket(websocket: WebSocket) -> None:
    await proxy.forward_websocket(websocket, lambda: _open_app(websocket), "")
