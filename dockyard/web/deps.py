"""Request plumbing shared by the routers: the controller and the caller's principal."""

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from dockyard.controller import auth
from dockyard.controller.assembly import Controller
from dockyard.errors import Forbidden
from dockyard.web import api_models

MAX_INT = 2**63 - 1
"""The largest integer the database (SQLite's INTEGER) and a file offset can hold: a number
in a path or query above it is refused as invalid (400) instead of overflowing (500)."""
PathNumber = Annotated[int, Path(ge=0, le=MAX_INT)]
"""A run number, token id or link id in a path."""
QueryOffset = Annotated[int, Query(ge=0, le=MAX_INT)]
"""A byte or row offset in a query string."""


class ApiRouter(APIRouter):
    """The JSON API's router: a route's answer carries exactly the keys its use case built.

    A route declares its answer's model (`web/api_models.py`) for `/openapi.json`; FastAPI
    would add every declared key the use case left out, as null (a dry run's `run`). With
    `response_model_exclude_unset` on every route it adds none; the models let unknown keys
    through, so it drops none either. Errors are declared as `api_models.Error`."""

    def add_api_route(self, *args: Any, **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        super().add_api_route(*args, **kwargs)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": api_models.Error, "description": meaning}
    for status, meaning in (
        (400, "invalid input (code: invalid_input, validation_error, …)"),
        (401, "missing, wrong or revoked token (code: unauthorized)"),
        (403, "the token may not do this (code: forbidden, unisolated_deploy)"),
        (404, "no such workspace, job, run or version (code: not_found, not_reconciled, …)"),
        (409, "clashes with the current state (code: conflict)"),
    )
}
"""The error answers every API route may give, for `/openapi.json` (docs/api.md)."""


def controller(request: Request) -> Controller:
    ctl: Controller = request.app.state.controller
    return ctl


def token_from(request: Request) -> str | None:
    """A bearer token, or the password of HTTP Basic auth (what git clients send)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


WORKER_API = "/api/v1/worker/"


def principal(request: Request) -> auth.Principal:
    """The caller; a worker token is refused everywhere but the worker API (and git fetch,
    `web/git_http.py`), whatever role a route asks for."""
    ctl = controller(request)
    with ctl.db.session() as session:
        found = auth.authenticate(session, token_from(request))
    if found.role == auth.WORKER and not request.url.path.startswith(WORKER_API):
        raise Forbidden(auth.WORKER_ONLY)
    return found


def worker(request: Request) -> auth.Principal:
    """The caller of `/api/v1/worker/*`: a worker token only."""
    found = principal(request)
    found.require_worker()
    return found
