"""One attempt to deliver one alert: an HTTP POST (webhook, Slack) or an SMTP session.

Every attempt is bounded: each network operation by the channel timeout
(`DOCKYARD_ALERT_TIMEOUT`), an HTTP answer's reading by that timeout in all, at most
`MAX_ANSWER` bytes of it read, redirects not followed. What comes back is one line for the
delivery record (`Outcome.error`): the HTTP status and the answer's first characters, or
the error's class and message, with the channel's secrets replaced by `***`.

httpx logs every request's URL; a Slack URL is a credential (and a webhook's may hold one),
so its lines are dropped on the thread while an alert is posted (`_Quiet`): the delivery
loop logs the outcome by channel name instead.
"""

import logging
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

import httpx

from dockyard import __version__
from dockyard.controller.alerts import messages

MAX_ANSWER = 4096  # bytes of an HTTP answer read (its start is kept for the record)
MAX_ERROR = 300  # characters of the error kept


_posting = threading.local()


class _Quiet(logging.Filter):
    """Drops httpx's request lines logged by a thread that is posting an alert."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_posting, "active", False)


def _quiet_httpx() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _Quiet) for f in logger.filters):
        logger.addFilter(_Quiet())


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    error: str | None = None


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    hide: tuple[str, ...] = (),
) -> Outcome:
    """POST `body` as JSON; a 2xx answer is delivered, anything else is a failed attempt."""
    if len(body) > messages.MAX_BODY:  # the fields are bounded: a bug, said in the record
        return failed(f"the alert is {len(body)} bytes, over {messages.MAX_BODY}")
    sent_headers = {
        "Content-Type": "application/json",
        "User-Agent": f"dockyard/{__version__}",
        **headers,
    }
    _quiet_httpx()
    _posting.active = True
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=sent_headers) as answer,
        ):
            start = _read_start(answer, timeout_s)
            if 200 <= answer.status_code < 300:
                return Outcome(True)
            text = start.decode("utf-8", "replace").strip()
            return failed(f"HTTP {answer.status_code}" + (f": {text}" if text else ""), hide)
    except (httpx.HTTPError, OSError) as exc:
        return failed(f"{type(exc).__name__}: {exc}", hide)
    finally:
        _posting.active = False


def _read_start(answer: httpx.Response, timeout_s: float) -> bytes:
    """At most MAX_ANSWER bytes, within `timeout_s` in all (a slow drip stops there)."""
    deadline = time.monotonic() + timeout_s
    data = b""
    for chunk in answer.iter_raw(1024):
        data += chunk
        if len(data) >= MAX_ANSWER or time.monotonic() > deadline:
            break
    return data[:MAX_ANSWER]


def send_mail(
    config: dict[str, object],
    password: str | None,
    mail: EmailMessage,
    timeout_s: float,
) -> Outcome:
    """Send `mail` through the channel's SMTP server (STARTTLS, SSL or plain; login if a
    user is set). Certificates are checked against the system's CA bundle."""
    host, port = str(config["host"]), int(str(config["port"]))
    security, username = config.get("security"), config.get("username")
    hide = (password,) if password else ()
    context = ssl.create_default_context()
    try:
        smtp = (
            smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=context)
            if security == "ssl"
            else smtplib.SMTP(host, port, timeout=timeout_s)
        )
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            if username:
                smtp.login(str(username), password or "")
            smtp.send_message(mail)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return failed(f"{type(exc).__name__}: {exc}", hide)
    return Outcome(True)


def failed(error: str, hide: tuple[str, ...] = ()) -> Outcome:
    return Outcome(False, one_line(error, hide))


def one_line(text: str, hide: tuple[str, ...] = ()) -> str:
    for secret in hide:
        if secret:
            text = text.replace(secret, "***")
    line = " ".join(text.split())
    printable = "".join(c if c.isprintable() else "?" for c in line)
    return messages.clip(printable, MAX_ERROR)
