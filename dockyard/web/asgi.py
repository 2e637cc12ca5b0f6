"""`create_asgi(settings)`: the server's one ASGI (FastAPI) application — named `asgi`, not
`app`, because in dockyard an app is an interactive job: the JSON API, the beacon,
git smart HTTP, the GitHub webhook receiver (`dockyard/webhooks`, its processing loop started
with the controller's loops) and the dashboard pages (errors as JSON for the API, as a page
under `/ui`), and in front of it all, by the `Host` header, the apps on their own origins
(`web/app_host.py`).

Serve it with uvicorn's `proxy_headers=False` (as `dockyard server` does): which
`X-Forwarded-*` headers to believe is `DOCKYARD_TRUSTED_PROXIES`'s to say (`web/origins.py`).
"""

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from dockyard import __version__, errors
from dockyard.compat.dlthub import app as dlthub_app
from dockyard.controller import app_origins
from dockyard.controller.assembly import Controller
from dockyard.settings import Settings
from dockyard.web import (
    api,
    api_alerts,
    api_apps,
    api_github_oidc,
    api_worker,
    api_workers,
    app_host,
    app_sessions,
    apps_dashboard,
    dlthub_links,
    forwarding,
    git_http,
    limits,
    pages,
    proxy,
)
from dockyard.web.http_status import status_of
from dockyard.webhooks import receiver as github_receiver
from dockyard.webhooks.wiring import Webhooks

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: errors.InvalidInput.code,
    401: errors.Unauthorized.code,
    403: errors.Forbidden.code,
    404: errors.NotFound.code,
    405: "method_not_allowed",
    409: errors.Conflict.code,
    413: errors.TooLarge.code,
}
"""The `code` of an error FastAPI or Starlette raise themselves (no route, wrong method)."""


def error_body(message: str, code: str) -> dict[str, str]:
    """Every API error's body: a one-line message for people, a stable code for programs."""
    return {"error": message, "code": code}


def create_asgi(settings: Settings, ctl: Controller | None = None) -> FastAPI:
    app_origins.check(settings)  # a bad apps domain or proxy list: refused before anything
    try:
        forwarding.networks(settings.trusted_proxies)
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None
    controller = ctl or Controller(settings)
    codes = app_sessions.Codes()
    apps = app_host.create(controller, codes)
    webhooks = Webhooks(controller)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gc_watch = _GcWatch()
        if settings.start_loops:
            controller.start()
            webhooks.start()
            # what start-up made (dlt, SQLAlchemy, the controller) lives as long as the
            # process: keep it out of the collector's full passes, which otherwise walked it
            # all every few requests (+100 ms on a 2,000-job dashboard page; bench/pages.py)
            gc.collect()
            gc.freeze()
            gc.callbacks.append(gc_watch)
        try:
            yield
        finally:
            await proxy.close_client(apps.state)
            if settings.start_loops:
                gc.callbacks.remove(gc_watch)  # one per running app, not one per start
                webhooks.stop()
                controller.stop()

    app = FastAPI(title="dockyard", version=__version__, lifespan=lifespan)
    app.state.controller = controller
    app.state.app_codes = codes
    app.state.webhooks = webhooks
    app.add_middleware(limits.BodyLimit, limits=limits.BodyLimits.from_settings(settings))

    _error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(api.router)
    app.include_router(api_apps.router)
    app.include_router(api_github_oidc.router)
    app.include_router(api_alerts.router)
    app.include_router(api_workers.router)
    app.include_router(api_worker.router)
    app.include_router(api.beacon_router)
    app.include_router(git_http.router)
    app.include_router(github_receiver.router)
    app.include_router(apps_dashboard.router)
    if settings.dlthub_compat:  # off: /dlthub/* and /w/* are 404 like any unknown path
        dlthub = dlthub_app.create_app(controller, status_of)
        app.state.dlthub = dlthub.state.compat
        app.mount(dlthub_app.PREFIX, dlthub)
        # the client posts packages at the root: ahead of dockyard's own /api/v1 routes
        app.router.routes[0:0] = dlthub_app.upload_routes(dlthub)
        app.include_router(dlthub_links.router)
    pages.install(app)
    app.add_middleware(app_host.HostRouter, apps=apps, settings=settings)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Errors as JSON (`{"error": …, "code": …}`, docs/api.md) for the API, as a one-line
    page under `/ui`."""

    @app.exception_handler(errors.DockyardError)
    async def _dockyard_error(request: Request, exc: errors.DockyardError) -> Response:
        if pages.is_page(request.url.path):
            return await run_in_threadpool(
                pages.render.error_response, request, exc, status_of(exc)
            )
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
        body = error_body(exc.message, exc.code)
        return JSONResponse(body, status_code=status_of(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        if pages.is_page(request.url.path):
            message = f"invalid request: {problems}"
            return await run_in_threadpool(pages.render.error_page, request, message, 400)
        body = error_body(f"invalid request: {problems}", "validation_error")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if pages.is_page(request.url.path):
            message = "no such page" if exc.status_code == 404 else str(exc.detail)
            return await run_in_threadpool(
                pages.render.error_page, request, message, exc.status_code
            )
        if exc.status_code in (204, 304):  # no body allowed (as Starlette's own handler)
            return Response(status_code=exc.status_code, headers=exc.headers)
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        body = error_body(_http_message(request, exc), code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        """A bug: logged with its traceback; the page or client gets one line."""
        log.exception("unexpected error", extra={"action": "request", "path": request.url.path})
        message = f"internal error ({type(exc).__name__}); the server log has the details"
        if pages.is_page(request.url.path):
            return await run_in_threadpool(pages.render.error_page, request, message, 500)
        return JSONResponse(error_body(message, "internal_error"), status_code=500)


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's bare "Not Found" / "Method Not Allowed", said with what was asked."""
    asked = f"{request.method} {request.url.path}"
    if exc.status_code == 404 and exc.detail == "Not Found":
        return f"no such endpoint: {asked}; the API's endpoints are listed at /docs"
    if exc.status_code == 405 and exc.detail == "Method Not Allowed":
        allowed = (exc.headers or {}).get("allow", "")
        return f"{asked} is not allowed here" + (f"; use {allowed}" if allowed else "")
    return str(exc.detail)


def create_beacon_asgi(ctl: Controller) -> FastAPI:
    """Only the beacon, for a second listener on the containers' network (Docker executor)."""
    app = FastAPI(title="dockyard beacon", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.controller = ctl
    app.add_middleware(limits.BodyLimit, limits=limits.BodyLimits.from_settings(ctl.settings))

    @app.exception_handler(errors.DockyardError)
    async def _dockyard_error(_request: Request, exc: errors.DockyardError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.code), status_code=status_of(exc))

    app.include_router(api.beacon_router)
    return app


class _GcWatch:
    """Logs a garbage collection that held the interpreter for `SLOW_GC_S` or more: every
    thread (scheduler, claims, requests) waits that long, and nothing else would say why."""

    SLOW_GC_S = 0.1

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        if took >= self.SLOW_GC_S:
            log.warning(
                "slow garbage collection",
                extra={
                    "action": "gc",
                    "generation": info.get("generation"),
                    "collected": info.get("collected"),
                    "ms": round(took * 1000),
                },
            )
