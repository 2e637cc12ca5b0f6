"""`create_app(settings)`: the server's one FastAPI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dockyard import __version__, errors
from dockyard.controller.core import Controller
from dockyard.settings import Settings
from dockyard.web import api, api_apps, git_http, proxy

STATUS = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unavailable: 503,
}


def status_of(exc: errors.DockyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def create_app(settings: Settings, ctl: Controller | None = None) -> FastAPI:
    controller = ctl or Controller(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.start_loops:
            controller.start()
        try:
            yield
        finally:
            await proxy.close_client(app.state)
            if settings.start_loops:
                controller.stop()

    app = FastAPI(title="dockyard", version=__version__, lifespan=lifespan)
    app.state.controller = controller

    @app.exception_handler(errors.DockyardError)
    async def _dockyard_error(_request: Request, exc: errors.DockyardError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
        return JSONResponse({"error": exc.message}, status_code=status_of(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(proxy.router)  # first: an app's many small requests match it at once
    app.include_router(api.router)
    app.include_router(api_apps.router)
    app.include_router(api.beacon_router)
    app.include_router(git_http.router)
    return app


def create_beacon_app(ctl: Controller) -> FastAPI:
    """Only the beacon, for a second listener on the containers' network (Docker executor)."""
    app = FastAPI(title="dockyard beacon", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.controller = ctl

    @app.exception_handler(errors.DockyardError)
    async def _dockyard_error(_request: Request, exc: errors.DockyardError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=status_of(exc))

    app.include_router(api.beacon_router)
    return app
