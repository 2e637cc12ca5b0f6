"""The reverse proxy's transport: a request on an app's origin, passed to the app's port.

HTTP and WebSocket traffic goes to the app's port on 127.0.0.1 (the local executor's process,
which listens on loopback only, or the port the Docker executor publishes there), bodies
streamed both ways. Which app, and who may pass, is decided on the app's origin
(`web/app_host.py`); here the request is passed on: never with dockyard's own credentials
(`Authorization`, the session and app cookies), with `X-Forwarded-*` as the server believes
them (`web/origins.py`), and the app's answer back without redirects off its origin.

A request for an app that is not running starts it and gets a page that reloads itself until
the app answers (API clients: 503 + Retry-After).
"""

import asyncio
import contextlib
import http.cookiejar
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from fastapi import Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import StreamingResponse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from dockyard import errors
from dockyard.controller import apps
from dockyard.controller.assembly import Controller
from dockyard.web import app_answers as answers
from dockyard.web import app_sessions, forwarding, origins, sessions

log = logging.getLogger(__name__)
CLIENT_KEY = "proxy_client"
SMALL_BODY = 256 * 1024  # bodies up to this size (with a Content-Length) are not streamed
_NO_COOKIES = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
OWN_COOKIES = (sessions.COOKIE, app_sessions.COOKIE)  # never sent to an app, never set by one


@dataclass(frozen=True, slots=True)
class Target:
    app: apps.App
    mount: str  # what the client sees on the app's origin: "" or /p/<token>
    link_id: int | None = None
    set_cookie: str | None = None  # a renewed app cookie to send back with the answer


Opener = Callable[[], Target]


def controller(conn: HTTPConnection) -> Controller:
    ctl: Controller = conn.app.state.controller
    return ctl


def _rest(conn: HTTPConnection, mount: str) -> str:
    """The path after the mount, as the client sent it (still percent-encoded)."""
    raw = conn.scope.get("raw_path") or conn.url.path.encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    if not path.startswith(mount + "/"):
        path = quote(conn.url.path)
    return path[len(mount) + 1 :] if path.startswith(mount + "/") else ""


def _where(conn: HTTPConnection, target: Target) -> forwarding.Mount:
    assert target.app.port is not None
    return forwarding.Mount(
        target.mount, target.app.base_path, target.app.port, origins.seen(conn).host
    )


# HTTP ---------------------------------------------------------------------------------------
def _client(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = getattr(request.app.state, CLIENT_KEY, None)
    if client is None:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=None, write=None, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            follow_redirects=False,
            trust_env=False,  # never through the machine's HTTP proxy: the app is local
            cookies=_NO_COOKIES,  # one client for every user: it must never keep a cookie
        )
        setattr(request.app.state, CLIENT_KEY, client)
    return client


async def close_client(state: Any) -> None:
    client: httpx.AsyncClient | None = getattr(state, CLIENT_KEY, None)
    if client is not None:
        await client.aclose()
        setattr(state, CLIENT_KEY, None)


async def forward_http(
    request: Request,
    open_target: Opener,
    mount: str,
    sign_in: Callable[[Request], str] | None = None,
) -> Response:
    """Pass one HTTP request to the app `open_target` names (it raises when the caller may
    not); `sign_in` says where a browser without credentials goes to get some."""
    if not forwarding.is_safe(request.url.path):
        return answers.problem(request, 400, "the path has `.` or `..` segments")
    try:
        target = await run_in_threadpool(open_target)
    except errors.DockyardError as exc:
        return answers.refused(request, exc, sign_in(request) if sign_in else None)
    app = target.app
    if app.status != "running" or app.port is None or app.run_id is None:
        return answers.not_ready(request, app)
    ctl = controller(request)
    ctl.apps.activity.touch(app.run_id)
    upstream = _upstream_request(request, target, _rest(request, mount))
    try:
        response = await _client(request).send(upstream, stream=True)
    except httpx.TransportError:
        ctl.apps.recent.forget_run(app.run_id)
        return answers.not_ready(request, app, answering=False)
    try:
        headers = _response_headers(request, target, response)
    except forwarding.OffOrigin as exc:
        await response.aclose()
        return answers.off_origin(request, app, exc.location)
    if _small(response):  # read at once: cheaper than a streamed response
        try:
            return await _whole(response, headers)
        except httpx.TransportError:
            ctl.apps.recent.forget_run(app.run_id)
            return answers.not_ready(request, app, answering=False)
    return _streamed(ctl, target, response, headers)


def _small(response: httpx.Response) -> bool:
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= SMALL_BODY


def _response_headers(
    conn: HTTPConnection, target: Target, response: httpx.Response
) -> forwarding.Headers:
    headers = forwarding.response_headers(
        response.headers.multi_items(), _where(conn, target), OWN_COOKIES
    )
    if target.set_cookie is not None:
        headers.append(("set-cookie", target.set_cookie))
    return headers


def _raw(headers: forwarding.Headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _whole(response: httpx.Response, headers: forwarding.Headers) -> Response:
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    whole = Response(body, status_code=response.status_code)
    whole.raw_headers = _raw(headers)
    return whole


def _forwarded(conn: HTTPConnection, mount: str) -> dict[str, str]:
    """`X-Forwarded-*` for the app: what the server believes, never what a client wrote
    (unless it is a trusted proxy)."""
    seen = origins.seen(conn)
    return {"For": seen.chain, "Proto": seen.proto, "Host": seen.host, "Prefix": mount}


def _upstream_request(request: Request, target: Target, rest: str) -> httpx.Request:
    app = target.app
    path = forwarding.upstream_path(rest, app.base_path)
    query = request.url.query
    url = f"http://127.0.0.1:{app.port}{path}" + (f"?{query}" if query else "")
    headers = forwarding.request_headers(
        request.headers.items(), OWN_COOKIES, _forwarded(request, target.mount)
    )
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    return _client(request).build_request(
        request.method,
        url,
        headers=headers,
        content=request.stream() if has_body else None,
    )


def _streamed(
    ctl: Controller, target: Target, response: httpx.Response, headers: forwarding.Headers
) -> StreamingResponse:
    app = target.app
    assert app.run_id is not None
    loop = asyncio.get_running_loop()

    def revoke() -> None:
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(response.aclose()))

    async def body() -> AsyncIterator[bytes]:
        ctl.apps.activity.opened(str(app.run_id))
        if target.link_id is not None:
            ctl.apps.connections.add(target.link_id, revoke)
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except (httpx.TransportError, httpx.StreamError):
            pass  # the app (or a revoked link) ended the stream: so does the response
        finally:
            if target.link_id is not None:
                ctl.apps.connections.discard(target.link_id, revoke)
            with anyio.CancelScope(shield=True):
                await response.aclose()
            ctl.apps.activity.closed(str(app.run_id))

    streamed = StreamingResponse(body(), status_code=response.status_code)
    streamed.raw_headers = _raw(headers)
    return streamed


# WebSocket ----------------------------------------------------------------------------------
async def forward_websocket(websocket: WebSocket, open_target: Opener, mount: str) -> None:
    """Relay one WebSocket to the app `open_target` names. A handshake from another origin
    is refused (cross-site WebSocket hijacking: a foreign page riding the viewer's cookie)."""
    if not forwarding.is_safe(websocket.url.path) or origins.is_foreign(websocket):
        await websocket.close(code=1008)
        return
    try:
        target = await run_in_threadpool(open_target)
    except errors.DockyardError:
        await websocket.close(code=1008)  # policy violation: not allowed (or no such app)
        return
    app = target.app
    if app.status != "running" or app.port is None or app.run_id is None:
        await websocket.close(code=1013)  # try again later: the app is starting
        return
    upstream = await _connect_upstream(websocket, target, _rest(websocket, mount))
    if upstream is None:
        controller(websocket).apps.recent.forget_run(app.run_id)
        await websocket.close(code=1013)
        return
    await websocket.accept(subprotocol=upstream.subprotocol)
    await _relay(controller(websocket), websocket, upstream, target)


async def _connect_upstream(
    websocket: WebSocket, target: Target, rest: str
) -> ClientConnection | None:
    app = target.app
    path = forwarding.upstream_path(rest, app.base_path)
    query = websocket.url.query
    url = f"ws://127.0.0.1:{app.port}{path}" + (f"?{query}" if query else "")
    headers = forwarding.request_headers(
        websocket.headers.items(), OWN_COOKIES, _forwarded(websocket, target.mount), websocket=True
    )
    offered = websocket.headers.get("sec-websocket-protocol", "")
    protocols = [Subprotocol(p.strip()) for p in offered.split(",") if p.strip()]
    try:
        return await connect(
            url,
            additional_headers=headers,
            subprotocols=protocols or None,
            user_agent_header=None,
            open_timeout=10,
            max_size=None,
            proxy=None,
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        log.info("app websocket refused", extra={"action": "proxy_ws", "error": repr(exc)})
        return None


async def _relay(
    ctl: Controller, websocket: WebSocket, upstream: ClientConnection, target: Target
) -> None:
    """Both directions until one side closes (or the public link is revoked)."""
    run_id = str(target.app.run_id)
    revoked = asyncio.Event()
    loop = asyncio.get_running_loop()

    def revoke() -> None:
        loop.call_soon_threadsafe(revoked.set)

    ctl.apps.activity.opened(run_id)
    if target.link_id is not None:
        ctl.apps.connections.add(target.link_id, revoke)
    from_client = asyncio.ensure_future(_client_to_app(websocket, upstream))
    tasks = [
        from_client,
        asyncio.ensure_future(_app_to_client(websocket, upstream)),
        asyncio.ensure_future(revoked.wait()),
    ]
    ended_by = "server"  # the relay itself was cancelled (the server is stopping)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        ended_by = _ended_by(done, from_client, revoked.is_set())
    finally:
        for task in tasks:
            task.cancel()
        if target.link_id is not None:
            ctl.apps.connections.discard(target.link_id, revoke)
        ctl.apps.activity.closed(run_id)
        code = 1008 if revoked.is_set() else _close_code(upstream.close_code)
        with anyio.CancelScope(shield=True):
            await upstream.close()
            if ended_by != "client":  # a client that left cannot be sent a close
                await _close_quietly(websocket, code)
        log.info(
            "app websocket closed", extra={"action": "proxy_ws", "run_id": run_id, "by": ended_by}
        )


def _ended_by(
    done: Iterable["asyncio.Future[Any]"], from_client: "asyncio.Future[Any]", revoked: bool
) -> str:
    """Who ended a relay: `client` (its tab closed, or it went away mid-send: a normal end),
    `app`, or `revoked` (the public link it came through)."""
    if revoked:
        return "revoked"
    for task in done:
        error = None if task.cancelled() else task.exception()
        if isinstance(error, WebSocketDisconnect | OSError):
            return "client"  # sending to a client that had gone
        if isinstance(error, ConnectionClosed):
            return "app"  # sending to an app that had gone
    return "client" if from_client in done else "app"


async def _client_to_app(websocket: WebSocket, upstream: ClientConnection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await upstream.send(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send(message["bytes"])


async def _app_to_client(websocket: WebSocket, upstream: ClientConnection) -> None:
    try:
        async for message in upstream:
            if isinstance(message, str):
                await websocket.send_text(message)
            else:
                await websocket.send_bytes(message)
    except ConnectionClosed:
        return


def _close_code(code: int | None) -> int:
    """The app's close code, unless it is one that must not be sent (1005, 1006, 1015)."""
    if code is None or code in (1005, 1006, 1015):
        return 1000
    return code


async def _close_quietly(websocket: WebSocket, code: int) -> None:
    # the client is gone already (starlette says so with WebSocketDisconnect)
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.close(code=code)
