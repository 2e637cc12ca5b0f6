"""Real receivers for alert tests, in the test process: a loopback HTTP server that records
every POST and answers from a script of statuses, and an SMTP server (aiosmtpd) that keeps
every message it accepts and checks a login."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port


@dataclass(frozen=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """POSTs to `/<path>` are recorded; `script[path]` lists the statuses to answer first
    (then 200)."""

    server: ThreadingHTTPServer
    posted: list[Posted] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            statuses = self.script.get(path) or []
            status = statuses.pop(0) if statuses else 200
            self.posted.append(Posted(path, headers, body, status))
            return status

    def at(self, path: str) -> list[Posted]:
        with self.lock:
            return [p for p in self.posted if p.path == path]


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status = holder[0].answer(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            text = b"ok" if status == 200 else b"receiver says no"
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server)
    holder.append(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    port: int
    login: tuple[str, str]
    messages: list[tuple[EmailMessage, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        mail = message_from_bytes(content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append((mail, list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == self.login
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@contextmanager
def smtp_server(login: tuple[str, str]) -> Iterator[Mailbox]:
    """A real SMTP server on loopback (no TLS: login allowed without it, for the test)."""
    box = Mailbox(free_port(), login)
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def wait_for(what: str, found: Callable[[], Any], timeout: float = 90) -> Any:
    """Poll `found` until it returns something truthy (alerts are sent by a loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not arrive")
        time.sleep(0.2)
