"""The request-body cap middleware (`web/limits.py`) against a tiny ASGI app: what the app
gets to read, and what the client gets back (real servers: tests/security/test_bounds.py)."""

import asyncio
import json
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dockyard.settings import Settings
from dockyard.web import limits

CAP = 10
LIMITS = limits.BodyLimits(dict.fromkeys(limits.CLASSES, CAP))
Message = dict[str, Any]


def scope(path: str = "/api/v1/x", headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or []}


class Reader:
    """An app that reads the whole body, then answers 200 with its length (or, if `catch`,
    swallows a body error and answers 400, as a careless route would)."""

    def __init__(self, catch: bool = False) -> None:
        self.catch = catch
        self.called = False
        self.complete = False

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        self.called = True
        body, more = b"", True
        try:
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        except limits.BodyTooLarge:
            if not self.catch:
                raise
            await answer(send, 400)
            return
        self.complete = True
        await answer(send, 200, str(len(body)).encode())


class EarlyAnswer:
    """An app that answers without reading the body (a 401 before authentication)."""

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        await answer(send, 401)


async def answer(send: Any, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def run(app: Any, scope: Message, chunks: list[bytes]) -> tuple[list[Message], int]:
    """Drive the middleware: the messages sent back and how many chunks were received."""
    sent: list[Message] = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    taken = 0

    async def receive() -> Message:
        nonlocal taken
        if taken >= len(queue):
            return {"type": "http.disconnect"}
        taken += 1
        return queue[taken - 1]

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    # in a thread of its own: a session-wide Playwright (tests/browser) may hold this thread's
    # event loop, and asyncio.run refuses to nest
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, limits.BodyLimit(app, LIMITS)(scope, receive, send)).result()
    return sent, taken


def status(sent: list[Message]) -> int:
    return int(sent[0]["status"])


def headers(sent: list[Message]) -> dict[bytes, bytes]:
    return dict(sent[0]["headers"])


def test_a_declared_length_over_the_cap_is_refused_before_anything_is_read() -> None:
    app = Reader()
    sent, taken = run(app, scope(headers=[(b"content-length", b"11")]), [b"x" * 11])
    assert (status(sent), taken, app.called) == (413, 0, False)
    assert headers(sent)[b"connection"] == b"close"
    error = json.loads(sent[1]["body"])["error"]
    assert "larger than 10 bytes" in error
    assert "DOCKYARD_MAX_API_BYTES" in error


def test_a_streamed_body_is_cut_off_when_it_passes_the_cap() -> None:
    app = Reader()
    sent, taken = run(app, scope(), [b"x" * 6, b"x" * 6, b"x" * 6])
    assert status(sent) == 413
    assert taken == 2  # the third chunk was never asked for
    assert not app.complete  # the app never saw the end of the body


def test_an_app_that_swallows_the_error_still_answers_413() -> None:
    sent, _ = run(Reader(catch=True), scope(), [b"x" * 6, b"x" * 6])
    assert status(sent) == 413
    assert len(sent) == 2  # our answer only, the app's 400 dropped


def test_a_body_within_the_cap_reaches_the_app_whole() -> None:
    app = Reader()
    sent, _ = run(app, scope(headers=[(b"content-length", b"10")]), [b"x" * 4, b"x" * 6])
    assert (status(sent), sent[1]["body"], app.complete) == (200, b"10", True)
    assert b"connection" not in headers(sent)


def test_an_answer_before_the_body_was_read_closes_the_connection() -> None:
    sent, taken = run(EarlyAnswer(), scope(headers=[(b"content-length", b"5")]), [b"x" * 5])
    assert (status(sent), taken) == (401, 0)
    assert headers(sent)[b"connection"] == b"close"


def test_a_request_without_a_body_keeps_its_connection() -> None:
    sent, _ = run(EarlyAnswer(), scope(), [b""])
    assert b"connection" not in headers(sent)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/beacon/abc.def/trace", "beacon"),
        ("/ui/login", "form"),
        ("/ui", "form"),
        ("/ui/w/x/tokens", "form"),
        ("/api/v1/workspaces", "api"),
        ("/git/ws.git/git-receive-pack", "git"),
        # the dlthub client's package uploads are pushes by another name
        ("/api/v1/workspaces/0b1c/deployments/9e2f/-upload", "git"),
        ("/api/v1/workspaces/0b1c/configurations/9e2f/-upload", "git"),
        ("/api/v1/workspaces/0b1c/deployments/-issue-upload", "api"),
        # its JSON API is an API; its manifest post is a deploy (megabytes for 1,000 jobs)
        ("/dlthub/api/v1/workspaces/0b1c/jobs/-trigger", "api"),
        ("/dlthub/api/v1/workspaces/0b1c/-deploy", "git"),
        ("/dlthub/logs/v1/workspaces/0b1c/job-runs/9e2f/logs", "other"),
        ("/apps/ws/app/upload", "other"),  # the dashboard's old app URLs only redirect
        ("/healthz", "other"),
        ("/uix", "other"),
        ("/", "other"),
    ],
)
def test_each_endpoint_has_its_class(path: str, kind: str) -> None:
    assert limits.endpoint_class(scope(path)) == kind


@pytest.mark.parametrize("path", ["/upload", "/p/token/upload", "/api/v1/x", "/beacon/x"])
def test_everything_on_an_apps_host_is_app_traffic(path: str) -> None:
    on_app_host = {**scope(path), limits.APP_LABEL: "notebook--ws"}
    assert limits.endpoint_class(on_app_host) == "apps"


def test_the_git_backstop_never_undercuts_the_push_limit() -> None:
    raised = Settings(max_git_bytes=10, max_push_bytes=1000)
    assert limits.BodyLimits.from_settings(raised).caps["git"] == 1000
    assert limits.BodyLimits.from_settings(Settings(max_git_bytes=10**12)).caps["git"] == 10**12


def test_caps_come_from_the_settings() -> None:
    caps = limits.BodyLimits.from_settings(Settings(max_api_bytes=5, beacon_max_bytes=7)).caps
    assert (caps["api"], caps["beacon"]) == (5, 7)
    assert set(caps) == set(limits.CLASSES)
