"""`create_app`: the dlthub client's endpoints as one FastAPI application, which the web app
mounts at `/dlthub` when the server runs with `--dlthub-compat` (docs/dlthub-cli.md).

Why a prefix: the client's control-plane paths (`/api/v1/workspaces/{id}`, `…/jobs`,
`…/deployments`) are dockyard's own API paths with other meanings, so the client is pointed
at `RUNTIME__API_BASE_URL=http://HOST:PORT/dlthub` (it keeps that prefix); the data plane
(`/logs/v1/…`) is served below the same prefix, and the workspace says so (`dataplane_url`).

The client's rules, kept here: every success is 200 (it refuses 201 and 204); every error
is a JSON object whose `detail` is one string (the client shows it; a FastAPI 422 list of
problems would reach the user as "unexpected response"), without `code`, so the client
adds "(HTTP n)".
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from dockyard import errors
from dockyard.compat.dlthub import logstream
from dockyard.compat.dlthub.service import Compat, Principal
from dockyard.controller import auth
from dockyard.controller.assembly import Controller

log = logging.getLogger(__name__)
PREFIX = "/dlthub"
WS = "/api/v1/workspaces/{ws}"


def upload_path(plural: str) -> str:
    """Where the client posts a package: at the server's root, whatever prefix the control
    plane has (it keeps only the scheme and host of `upload_url`); `upload_routes` serves it
    there."""
    return WS + f"/{plural}/{{upload_id}}/-upload"


Json = dict[str, Any]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0, le=2**62)]
StatusOf = Callable[[errors.DockyardError], int]


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller's principal and key (the key is also its data-plane token)."""

    principal: Principal
    key: str


def create_app(ctl: Controller, status_of: StatusOf) -> FastAPI:
    app = FastAPI(title="dockyard: dlthub client API", docs_url=None, redoc_url=None)
    app.state.compat = Compat(ctl)
    _errors(app, status_of)
    _control_plane(app)
    _data_plane(app)
    return app


def upload_routes(compat_app: ASGIApp) -> list[Route]:
    """The package upload paths at the server's root, answered by the compat app itself
    (its errors, its routes): the web app puts them ahead of its own routes."""
    return [
        Route(upload_path(plural), compat_app, methods=["POST"])
        for plural in ("deployments", "configurations")
    ]


async def _package(request: Request, limit: int) -> bytes:
    """An upload's body, at most `limit` bytes (`DOCKYARD_MAX_PUSH_BYTES`, as a push), read
    after the caller is known: a package is held in memory (its secrets are still clear)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.TooLarge(
                f"the upload is larger than {limit} bytes, the most a deploy may send; keep data"
                " files out of the workspace (.gitignore) or raise DOCKYARD_MAX_PUSH_BYTES"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _compat(request: Request) -> Compat:
    compat: Compat = request.app.state.compat
    return compat


def _caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    with _compat(request).ctl.db.session() as session:
        found = auth.authenticate(session, key or None)
    if found.role == auth.WORKER:
        raise errors.Forbidden(auth.WORKER_ONLY)
    return Caller(found, key)


def dataplane_url(request: Request) -> str:
    """This server with the prefix the app is mounted at: at DOCKYARD_PUBLIC_URL when set
    (behind a proxy), else as the client reached it."""
    root = str(request.scope.get("root_path") or "")
    public = _compat(request).ctl.settings.public_url
    if public:
        return public.rstrip("/") + PREFIX
    return f"{request.url.scheme}://{request.url.netloc}{root}"


Who = Annotated[Caller, Depends(_caller)]
Svc = Annotated[Compat, Depends(_compat)]


def _control_plane(app: FastAPI) -> None:  # noqa: C901 (one short route per endpoint)
    @app.get("/api/v1/organizations")
    def organizations(c: Svc, who: Who) -> Json:
        return c.organizations(who.principal)

    @app.get("/api/v1/organizations/{org}/me")
    def me(org: str, c: Svc, who: Who, request: Request) -> Json:
        return c.me(who.principal, org, dataplane_url(request))

    @app.get(WS)
    def workspace(ws: str, c: Svc, who: Who, request: Request) -> Json:
        return c.get_workspace(who.principal, ws, dataplane_url(request))

    @app.post(WS + "/-issue-dataplane-token")
    def dataplane_token(ws: str, c: Svc, who: Who) -> Json:
        return c.dataplane_token(who.principal, ws, who.key)

    @app.get(WS + "/jobs")
    def jobs(
        ws: str,
        c: Svc,
        who: Who,
        request: Request,
        limit: Limit = 100,
        offset: Offset = 0,
        ref: str | None = None,
        is_archived: bool | None = None,
    ) -> Json:
        url = dataplane_url(request)
        return c.list_jobs(who.principal, ws, url, ref, is_archived, limit, offset)

    @app.get(WS + "/jobs/{job}")
    def job(ws: str, job: str, c: Svc, who: Who, request: Request) -> Json:
        return c.get_job(who.principal, ws, dataplane_url(request), job)

    @app.post(WS + "/jobs/{job}/-pause")
    def pause(ws: str, job: str, c: Svc, who: Who, request: Request) -> Json:
        return c.pause(who.principal, ws, dataplane_url(request), job, True)

    @app.post(WS + "/jobs/{job}/-resume")
    def resume(ws: str, job: str, c: Svc, who: Who, request: Request) -> Json:
        return c.pause(who.principal, ws, dataplane_url(request), job, False)

    @app.post(WS + "/jobs/-trigger")
    def trigger(ws: str, c: Svc, who: Who, request: Request, body: Annotated[Json, Body()]) -> Json:
        return c.trigger(who.principal, ws, dataplane_url(request), body)

    @app.get(WS + "/job-runs")
    def job_runs(
        ws: str,
        c: Svc,
        who: Who,
        request: Request,
        limit: Limit = 100,
        offset: Offset = 0,
        job_id: str | None = None,
        number: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        status: Annotated[list[str] | None, Query(max_length=20)] = None,
    ) -> Json:
        url = dataplane_url(request)
        return c.list_runs(who.principal, ws, url, job_id, number, status or [], limit, offset)

    @app.get(WS + "/job-runs/{run}")
    def job_run(ws: str, run: str, c: Svc, who: Who, request: Request) -> Json:
        return c.get_run(who.principal, ws, dataplane_url(request), run)

    @app.post(WS + "/job-runs/-cancel")
    def cancel_runs(ws: str, c: Svc, who: Who, body: Annotated[Json, Body()]) -> Json:
        run_ids = [str(r) for r in body.get("job_run_ids") or []]
        return c.cancel_runs(who.principal, ws, run_ids, bool(body.get("dry_run")))

    @app.post(WS + "/job-runs/{run}/-cancel")
    def cancel_run(ws: str, run: str, c: Svc, who: Who, request: Request) -> Json:
        return c.cancel_run(who.principal, ws, dataplane_url(request), run)

    @app.post(WS + "/-deploy")
    def deploy(ws: str, c: Svc, who: Who, request: Request, body: Annotated[Json, Body()]) -> Json:
        return c.deploy(who.principal, ws, dataplane_url(request), body)

    for kind, plural in (("deployment", "deployments"), ("configuration", "configurations")):
        _versions(app, kind, plural)


def _versions(app: FastAPI, kind: str, plural: str) -> None:
    @app.get(f"{WS}/{plural}/latest", name=f"latest_{kind}")
    def latest(ws: str, c: Svc, who: Who) -> Json:
        return c.latest_version(who.principal, ws, kind)

    @app.post(f"{WS}/{plural}/-issue-upload", name=f"issue_upload_{kind}")
    def issue_upload(ws: str, c: Svc, who: Who, request: Request) -> Json:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return c.issue_upload(who.principal, ws, kind, base, who.key)

    @app.post(upload_path(plural), name=f"upload_{kind}")
    async def upload(ws: str, upload_id: str, c: Svc, who: Who, request: Request) -> Json:
        body = await _package(request, c.ctl.settings.push_limit)
        ctype = request.headers.get("content-type", "")
        args = (who.principal, ws, kind, upload_id, ctype, body)
        result: Json = await run_in_threadpool(c.upload, *args)
        return result

    @app.get(f"{WS}/{plural}", name=f"list_{plural}")
    def listed(
        ws: str,
        c: Svc,
        who: Who,
        limit: Limit = 100,
        offset: Offset = 0,
        version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    ) -> Json:
        return c.versions(who.principal, ws, kind, version, limit, offset)


def _data_plane(app: FastAPI) -> None:
    @app.get("/logs/v1/workspaces/{ws}/job-runs/{run}/logs")
    def stored_log(ws: str, run: str, c: Svc, who: Who) -> Response:
        found = logstream.target(c, who.principal, ws, run)
        lines = logstream.stored(c, who.principal, found)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    @app.get("/telemetry/v1/workspaces/{ws}/job-runs/{run}/result-trace")
    def result(ws: str, run: str, c: Svc, who: Who) -> Json:
        return c.result(who.principal, ws, run)

    @app.get("/logs/v1/workspaces/{ws}/job-runs/{run}/log-stream")
    def live_log(ws: str, run: str, c: Svc, who: Who) -> Response:
        found = logstream.target(c, who.principal, ws, run)
        events = logstream.live(c, who.principal, found)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _errors(app: FastAPI, status_of: StatusOf) -> None:
    """Every error as `{"detail": "<one line>"}`."""

    def answer(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(errors.DockyardError)
    async def _dockyard(_request: Request, exc: errors.DockyardError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
        return answer(exc.message, status_of(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return answer(f"invalid request: {problems}", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return answer(message, exc.status_code, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        # the traceback in the server log, one line to the client
        log.error(
            "unexpected error",
            exc_info=exc,
            extra={"action": "dlthub_request", "path": request.url.path},
        )
        return answer(f"internal error ({type(exc).__name__}); the server log has the details", 500)
