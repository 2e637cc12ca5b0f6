"""Signing in to an app's own origin: a one-time code from the dashboard, exchanged on the
app's origin for a cookie of that origin only.

The dashboard's session cookie never leaves the dashboard's host, so an app's origin knows
nobody by itself. A browser without an app cookie is sent to the dashboard
(`/ui/app-session?app=<label>&next=<path>`), which checks the viewer's session and role
and answers with a redirect to `<app origin>/_dockyard/session?code=…&next=…`. The code is
random (256 bits), bound to that app's host label and to the viewer's token, good once and
for 60 seconds, and kept only as a hash in this server process's memory. The app's origin
exchanges it for its own cookie, `dockyard_app`: host-only, HttpOnly, SameSite=Lax, Secure
on https, signed with a key derived from the session key and bound to the app's label (it
opens that one app, no other). It names the token, which is looked up on every request, so
revoking the token ends it at once, like a dashboard session. It lasts an hour, is renewed
while in use, and never outlives the dashboard session it came from (12 hours).
"""

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import quote

from dockyard.web.sessions import MAX_AGE_S as MAX_SESSION_S

COOKIE = "dockyard_app"
HANDSHAKE = "/_dockyard/session"
START = "/ui/app-session"
CODE_TTL_S = 60.0
MAX_CODES = 10_000
MAX_AGE_S = 3600
RENEW_AFTER_S = 600
SESSION_MAX_AGE_S = MAX_SESSION_S  # an app cookie never outlives the session it came from


@dataclass(frozen=True, slots=True)
class Grant:
    """Who an app cookie (or a code) stands for, and since when."""

    token_id: int
    session_issued: int  # when the dashboard session it came from began
    issued: int = 0  # when this cookie was issued


class Codes:
    """One-time codes of the handshake, in memory: hash → (label, grant, deadline)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._codes: dict[str, tuple[str, Grant, float]] = {}
        self._lock = threading.Lock()

    def mint(self, label: str, grant: Grant) -> str:
        code = secrets.token_urlsafe(32)
        now = self.monotonic()
        with self._lock:
            # oldest first (one lifetime for all): drop the expired ones, and in a flood of
            # unused codes the oldest, so that memory stays bounded
            while self._codes and (
                len(self._codes) >= MAX_CODES or next(iter(self._codes.values()))[2] < now
            ):
                del self._codes[next(iter(self._codes))]
            self._codes[_digest(code)] = (label, grant, now + CODE_TTL_S)
        return code

    def take(self, code: str, label: str) -> Grant | None:
        """The grant of an unexpired code for this app, which is then spent; else None."""
        with self._lock:
            entry = self._codes.pop(_digest(code), None)
        if entry is None or entry[2] < self.monotonic() or not hmac.compare_digest(entry[0], label):
            return None
        return entry[1]


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _sign(key: bytes, label: str, payload: str) -> str:
    return hmac.new(key, f"{label}|{payload}".encode(), hashlib.sha256).hexdigest()


def cookie_value(key: bytes, label: str, grant: Grant, now: int) -> str:
    """`<token id>.<session issued>.<issued>.<HMAC over the app's label and these>`."""
    payload = f"{grant.token_id}.{grant.session_issued}.{now}"
    return f"{payload}.{_sign(key, label, payload)}"


def read_cookie(key: bytes, label: str, value: str, now: int) -> Grant | None:
    """The grant of a cookie signed for this app, neither expired nor older than its
    session allows; else None."""
    parts = value.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(_sign(key, label, payload), parts[3]):
        return None
    grant = Grant(int(parts[0]), int(parts[1]), int(parts[2]))
    if now - grant.issued > MAX_AGE_S or now - grant.session_issued > SESSION_MAX_AGE_S:
        return None
    return grant


def cookie_values(header: str) -> list[str]:
    """Every `dockyard_app` value of a Cookie header (a neighbour may have planted more)."""
    values = []
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip() == COOKIE and value:
            values.append(value.strip().strip('"'))
    return values


def renewed(key: bytes, label: str, grant: Grant, now: int) -> str | None:
    """A fresh cookie value for a cookie in use for a while (None: still fresh enough)."""
    if now - grant.issued < RENEW_AFTER_S:
        return None
    return cookie_value(key, label, replace(grant, issued=now), now)


def set_cookie_header(value: str, secure: bool) -> str:
    """The `Set-Cookie` header of an app cookie: host-only, the whole origin, no script."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Max-Age={MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax{flags}"


def safe_path(target: str | None) -> str:
    """A path on this origin to go to (never another host: no `//host`, no scheme, no
    backslash or control characters, which browsers read as slashes or drop)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(ord(c) < 33 or c in "\\\x7f" for c in target):
        return "/"
    return target


def start_url(dashboard: str, label: str, next_path: str) -> str:
    """Where the app's origin sends a browser to get signed in: the dashboard's side."""
    return f"{dashboard}{START}?app={quote(label)}&next={quote(safe_path(next_path), safe='')}"


def handshake_url(origin: str, code: str, next_path: str) -> str:
    """Where the dashboard sends the browser back: the app's side, with the code."""
    return f"{origin}{HANDSHAKE}?code={quote(code)}&next={quote(safe_path(next_path), safe='')}"
