"""Every request body has a cap, enforced before the application sees a byte of it.

Routes authenticate after the framework has read their body (FastAPI parses a JSON body
before it resolves dependencies), and some endpoints take no token at all (the beacon, the
login form), so a cap checked inside a route comes too late: 300 MB sent to the login form
used to be held in memory before the 401. This ASGI middleware sits in front of everything:

- a declared `Content-Length` over the endpoint's cap is answered 413 at once, before any
  byte of the body is read and before authentication;
- a streamed body (chunked, no length) is counted in `receive()`; the chunk that passes the
  cap raises `BodyTooLarge` instead of being delivered, so the application never sees the
  end of the body and cannot act on part of it; whatever it answers then, the client gets
  413 (unless a streamed answer had already begun).

A 413 closes the connection (`Connection: close`), and so does any answer given before the
request's body was read to its end (a 401 before a body is read, say): the server stops
reading what the client still sends instead of reading and discarding it. Caps are per kind
of endpoint (`endpoint_class`) and come from the settings.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.settings import Settings

CLOSE = (b"connection", b"close")
CLASSES = ("beacon", "form", "api", "git", "apps", "webhook", "other")
SETTING = {
    "beacon": "DOCKYARD_BEACON_MAX_BYTES",
    "form": "DOCKYARD_MAX_FORM_BYTES",
    "api": "DOCKYARD_MAX_API_BYTES",
    "git": "DOCKYARD_MAX_GIT_BYTES",
    "apps": "DOCKYARD_MAX_APP_BYTES",
    "webhook": "DOCKYARD_MAX_WEBHOOK_BYTES",
    "other": "DOCKYARD_MAX_OTHER_BYTES",
}
"""The setting that raises each cap (named in the 413's message)."""


class BodyTooLarge(HTTPException):
    """Raised from `receive()` when a streamed body passes its cap (a 413 wherever it
    surfaces; the middleware makes sure the client gets a 413 even if a route catches it)."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message)
        self.message = message


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The cap in bytes of each kind of endpoint."""

    caps: Mapping[str, int]

    @classmethod
    def from_settings(cls, settings: Settings) -> "BodyLimits":
        return cls(
            {
                "beacon": settings.beacon_max_bytes,
                "form": settings.max_form_bytes,
                "api": settings.max_api_bytes,
                # a backstop only: the git route streams pushes and applies
                # DOCKYARD_MAX_PUSH_BYTES itself, with git's own cleanup; never below it
                "git": max(settings.max_git_bytes, settings.push_limit),
                "apps": settings.max_app_bytes,
                "webhook": settings.max_webhook_bytes,
                "other": settings.max_other_bytes,
            }
        )

    def message(self, kind: str) -> str:
        return (
            f"the request body is larger than {self.caps[kind]} bytes, the most this server"
            f" accepts here; send less (the operator can raise {SETTING[kind]})"
        )


APP_LABEL = "dockyard.app_label"  # set in the scope by web/app_host.HostRouter


def is_app_traffic(scope: Scope) -> bool:
    """Requests for an app's own host (web/app_host.py): the host router has put the app's
    label in the scope before this middleware of the apps' application sees them."""
    return APP_LABEL in scope


def endpoint_class(scope: Scope) -> str:
    """Which cap applies to a request: one of `CLASSES`."""
    if is_app_traffic(scope):
        return "apps"
    path: str = scope.get("path", "")
    if path.startswith("/api/v1/workspaces/") and path.endswith("/-upload"):
        return "git"  # a dlthub client's code or configuration package: a push by another name
    if path.startswith("/dlthub/api/") and path.endswith("/-deploy"):
        return "git"  # the dlthub client's manifest (a 1,000-job one is megabytes): a deploy
    prefixes = (
        ("/beacon/", "beacon"),
        ("/git/", "git"),
        ("/api/", "api"),
        ("/dlthub/api/", "api"),  # the dlthub client's API (compat/dlthub)
        ("/webhooks/", "webhook"),
    )
    for prefix, kind in prefixes:
        if path.startswith(prefix):
            return kind
    if path == "/ui" or path.startswith("/ui/"):
        return "form"
    return "other"


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero length, or chunked)."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length`, or None (chunked or no body). The HTTP server has
    already refused a malformed or repeated one."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimit:
    """The ASGI middleware, in front of every route of both listeners (`web/asgi.py`)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: BodyLimits,
        classify: Callable[[Scope], str] = endpoint_class,
    ) -> None:
        self.app = app
        self.limits = limits
        self.classify = classify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = self.classify(scope)
        cap = self.limits.caps[kind]
        length = declared_length(scope)
        if length is not None and length > cap:
            await refuse(send, self.limits.message(kind))
            return
        guard = _Guard(receive, send, cap, self.limits.message(kind), has_body(scope))
        try:
            await self.app(scope, guard.receive, guard.send)
        except BodyTooLarge:
            if guard.started:
                raise  # too late for a 413: the server drops the connection
            if not guard.replaced:
                await refuse(send, guard.message)
            return
        if guard.exceeded and not (guard.started or guard.replaced):
            await refuse(send, guard.message)  # the application swallowed it and said nothing


class _Guard:
    """One request's counted `receive` and watched `send`."""

    def __init__(
        self, receive: Receive, send: Send, cap: int, message: str, body: bool = True
    ) -> None:
        self._receive = receive
        self._send = send
        self.cap = cap
        self.message = message
        self.received = 0
        self.complete = not body  # the whole request body has been read
        self.exceeded = False
        self.started = False  # a response has begun (its status can no longer change)
        self.replaced = False  # the application's answer was swapped for our 413

    async def receive(self) -> Message:
        if self.exceeded:
            raise BodyTooLarge(self.message)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.cap:
                self.exceeded = True
                raise BodyTooLarge(self.message)
            self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.replaced:
            return  # the rest of the application's answer: dropped
        if message["type"] == "http.response.start" and not self.started:
            if self.exceeded:
                # the application caught the error and answered something else
                self.replaced = True
                await refuse(self._send, self.message)
                return
            self.started = True
            if not self.complete:  # answered before the body was read: read no more of it
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
        await self._send(message)


async def refuse(send: Send, message: str) -> None:
    """A 413 with a one-line JSON error; the connection is closed after it."""
    body = json.dumps({"error": message, "code": "too_large"}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        CLOSE,
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": 413, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
