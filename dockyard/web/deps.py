"""Request plumbing shared by the routers: the controller and the caller's principal."""

import base64
import binascii

from fastapi import Request

from dockyard.controller import auth
from dockyard.controller.core import Controller


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
