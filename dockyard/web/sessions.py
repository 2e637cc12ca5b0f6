"""Browser sessions: log in with an API token, get a signed cookie that names the token.

The cookie (`dockyard_session`, HttpOnly, SameSite=Lax) holds `<token id>.<issued at>.<HMAC>`
under `<data-dir>/session.key`, never the token itself. Every request looks the token up
again, so revoking a token ends its sessions at once. Each session has a CSRF token (an HMAC
of the cookie) that every state-changing form must send back.

Pages accept either the cookie or the API's `Authorization: Bearer …` header (not HTTP
Basic, which browsers replay by themselves); the JSON API stays bearer-only. The cookie is
host-only on the dashboard's host and is never accepted anywhere else: apps, on origins of
their own, get cookies of their own (`web/app_sessions.py`, keyed from the same secret).
"""

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from fastapi import Request, Response
from sqlalchemy import select
from starlette.requests import HTTPConnection

from dockyard.controller import auth
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Token
from dockyard.errors import Forbidden, Unauthorized
from dockyard.web import deps, origins

COOKIE = "dockyard_session"
MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"


def load_key(data_dir: Path) -> bytes:
    path = data_dir / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def _key(ctl: Controller) -> bytes:
    key: bytes | None = getattr(ctl, "_session_key", None)
    if key is None:
        key = load_key(ctl.settings.data_dir)
        ctl._session_key = key  # type: ignore[attr-defined]
    return key


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def login(ctl: Controller, token: str) -> str:
    """Check an API token and return the cookie value for its session."""
    with ctl.db.session() as session:
        principal = auth.authenticate(session, token.strip())
    if principal.role == auth.WORKER:  # a worker host's token opens no dashboard
        raise Forbidden(auth.WORKER_ONLY)
    payload = f"{principal.token_id}.{int(time.time())}"
    return f"{payload}.{_sign(_key(ctl), payload)}"


def app_key(ctl: Controller) -> bytes:
    """The key of apps' own cookies and nothing else (derived: a session cookie can never
    pass for an app cookie, nor the other way round)."""
    return hmac.new(_key(ctl), b"dockyard app cookies", hashlib.sha256).digest()


def issued_at(ctl: Controller, value: str | None) -> int | None:
    """When a valid, unexpired session cookie was issued (seconds since the epoch)."""
    if not value or value.count(".") != 2:
        return None
    token_id, issued, signature = value.split(".")
    if not hmac.compare_digest(_sign(_key(ctl), f"{token_id}.{issued}"), signature):
        return None
    if not (token_id.isdigit() and issued.isdigit()) or time.time() - int(issued) > MAX_AGE_S:
        return None
    return int(issued)


def from_cookie(ctl: Controller, value: str | None) -> auth.Principal | None:
    """The principal of a valid, unexpired session cookie whose token is not revoked."""
    if value is None or issued_at(ctl, value) is None:
        return None
    return principal_of(ctl, int(value.split(".")[0]))


def principal_of(ctl: Controller, token_id: int) -> auth.Principal | None:
    """The principal of a token that exists and is not revoked (looked up every time)."""
    with ctl.db.session() as session:
        row = session.scalar(select(Token).where(Token.id == token_id))
        if row is None or row.revoked_at is not None:
            return None
        return auth.Principal(row.id, row.role, row.workspace_id)


def bearer(request: HTTPConnection) -> str | None:
    """A bearer token only: HTTP Basic credentials are what a browser may replay on its
    own (cached from a git URL), so they never stand in for a session here."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def principal_or_none(request: Request) -> auth.Principal | None:
    """Who is asking: a bearer token, else the session cookie, else nobody."""
    ctl = deps.controller(request)
    token = bearer(request)
    if token:
        with ctl.db.session() as session:
            return auth.authenticate(session, token)
    return from_cookie(ctl, request.cookies.get(COOKIE))


def require(request: Request) -> auth.Principal:
    principal = principal_or_none(request)
    if principal is None:
        raise Unauthorized("log in first (or send Authorization: Bearer <token>)")
    return principal


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session (put it in every form as `csrf_token`)."""
    cookie = request.cookies.get(COOKIE) or ""
    return _sign(_key(deps.controller(request)), f"csrf:{cookie}")


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a state-changing request whose form does not carry the session's CSRF token
    (bearer-token callers are not browsers and need none)."""
    if bearer(request):
        return
    if not submitted or not hmac.compare_digest(csrf_token(request), submitted):
        raise Forbidden(
            "the form is stale or was not sent by dockyard (CSRF check); reload the page"
        )


def set_cookie(response: Response, request: Request, value: str) -> None:
    """The session cookie: host-only (no Domain), HttpOnly, SameSite=Lax, Secure when the
    page came over https (directly, through a trusted proxy that says so, or by the server's
    public URL)."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="lax",
        secure=origins.is_https(request),
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
