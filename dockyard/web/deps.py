"""Request plumbing shared by the routers: the controller and the caller's principal."""

import base64
import binascii
from typing import Annotated

from fastapi import Path, Query, Request

from dockyard.controller import auth
from dockyard.controller.core import Controller

MAX_INT = 2**63 - 1
"""The largest integer the database (SQLite's INTEGER) and a file offset can hold: a number
in a path or query above it is refused as invalid (400) instead of overflowing (500)."""
PathNumber = Annotated[int, Path(ge=0, le=MAX_INT)]
"""A run number, token id or link id in a path."""
QueryOffset = Annotated[int, Query(ge=0, le=MAX_INT)]
"""A byte or row offset in a query string."""


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


def principal(request: Request) -> auth.Principal:
    ctl = controller(request)
    with ctl.db.session() as session:
        return auth.authenticate(session, token_from(request))
