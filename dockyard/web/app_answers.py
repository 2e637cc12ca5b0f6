"""The proxy's own answers, when it does not pass a request on: refused (a browser without
credentials goes to sign in), not found, a redirect off the app's origin refused, and the
page that reloads itself while an app starts (503 + Retry-After for API clients; 502 when
its start failed)."""

import html
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection

from dockyard import errors
from dockyard.controller import apps
from dockyard.web.http_status import status_of

RETRY_AFTER_S = 2
STATE_HEADER = "x-dockyard-app"  # on the proxy's own answers: starting | failed


def wants_html(conn: HTTPConnection) -> bool:
    return "text/html" in conn.headers.get("accept", "")


def problem(request: Request, status: int, message: str) -> Response:
    if wants_html(request):
        return HTMLResponse(page("dockyard", message), status_code=status)
    return JSONResponse({"error": message}, status_code=status)


def here(request: Request) -> str:
    """The path and query the client asked for."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def refused(request: Request, exc: errors.DockyardError, sign_in: str | None = None) -> Response:
    """A refusal; a browser's page request without credentials goes to `sign_in` (the
    dashboard's login page, or its app sign-in) instead."""
    status = status_of(exc)
    if status == 401 and wants_html(request) and request.method in ("GET", "HEAD"):
        target = sign_in or f"/ui/login?next={quote(here(request), safe='')}"
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response = problem(request, status, exc.message)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def off_origin(request: Request, app: apps.App, location: str) -> Response:
    """The app redirected off its own origin: not passed on (no open redirects)."""
    shown = location if len(location) <= 200 else location[:200] + "…"
    message = (
        f"{app.name} redirected to {shown!r}, outside its own origin; dockyard passes on"
        " only redirects that stay on the app's origin (link to other sites instead)"
    )
    return problem(request, 502, message)


def not_ready(request: Request, app: apps.App, answering: bool = True) -> Response:
    """A page that reloads itself while the app starts (503 + Retry-After for API clients);
    502 without reloading when its start failed."""
    failed = app.status == "failed"
    run = f"run #{app.number}" if app.number else "a new run"
    if failed:
        message = (
            f"{app.job_ref} could not start ({run}: {app.reason or 'failed'})."
            f" It is tried again on a request after {apps.RETRY_AFTER_FAILURE_S:g} s;"
            f" `dockyard logs {app.name}` shows why."
        )
    elif app.status == "stopping":
        message = f"{app.job_ref} is stopping ({run}); it starts again in a moment."
    else:
        waiting = "starting" if answering else "started, waiting for it to answer"
        message = f"{app.job_ref} is {waiting} ({run}). This page reloads until it answers."
    status = 502 if failed else 503
    headers = {STATE_HEADER: "failed" if failed else "starting"}
    if not failed:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if wants_html(request):
        title = f"{app.name} could not start" if failed else f"Starting {app.name}…"
        body_page = page(title, message, refresh=None if failed else RETRY_AFTER_S)
        return HTMLResponse(body_page, status_code=status, headers=headers)
    body: dict[str, Any] = {"status": "failed" if failed else "starting", "job_ref": app.job_ref}
    body |= {"run_id": app.run_id, "number": app.number, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def page(title: str, message: str, refresh: int | None = None, to: str | None = None) -> str:
    """A one-line page; `refresh` reloads it (or goes `to` a URL) after so many seconds."""
    target = f";url={to}" if to is not None else ""
    meta = f'<meta http-equiv="refresh" content="{refresh}{html.escape(target)}">'
    meta = meta if refresh is not None else ""
    link = f' <a href="{html.escape(to)}">Continue</a>' if to is not None else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"{meta}<title>{html.escape(title)}</title><style>body{{font-family:system-ui,"
        "sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2937}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(message)}{link}</p>"
        "</body></html>"
    )
