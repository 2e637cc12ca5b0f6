"""What an alert says, for each kind of channel: pure functions, no I/O.

An alert's facts (`facts`) are fixed when the run ends and stored in its outbox row; the
link to the run page is made when it is sent, from the server's public URL
(`DOCKYARD_PUBLIC_URL`). Every field is bounded, so every message is: the reason keeps its
first `MAX_REASON` characters.
"""

import hashlib
import hmac
import json
import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote

MAX_REASON = 2000
MAX_BODY = 16 * 1024  # no alert body is larger (the fields above are bounded)
SIGNATURE_HEADER = "X-Dockyard-Signature-256"
TIMESTAMP_HEADER = "X-Dockyard-Timestamp"
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

HEADLINES = {
    "failed": "failed",
    "timeout": "timed out",
    "lost": "was lost",
    "recovered": "recovered: it completed after a failure",
    "test": "test alert",
}


def facts(
    event: str,
    workspace: str,
    job_ref: str,
    run: dict[str, Any],
) -> dict[str, Any]:
    """The stored part of an alert: `run` has id, number, status, reason, trigger, finished_at."""
    reason = run.get("reason")
    return {
        "event": event,
        "workspace": workspace,
        "job": job_ref,
        "run_id": run.get("id"),
        "run_number": run.get("number"),
        "status": run.get("status"),
        "reason": clip(reason, MAX_REASON) if reason else None,
        "trigger": clip(str(run.get("trigger") or ""), 255) or None,
        "finished_at": run.get("finished_at"),
    }


def test_facts(workspace: str, channel: str) -> dict[str, Any]:
    return {
        "event": "test",
        "workspace": workspace,
        "job": None,
        "run_id": None,
        "run_number": None,
        "status": None,
        "reason": f"a test of the alert channel {channel!r}: if you read this, it works",
        "trigger": None,
        "finished_at": None,
    }


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_url(base_url: str, message: dict[str, Any]) -> str | None:
    if not message.get("run_id"):
        return None
    ws = quote(str(message["workspace"]), safe="")
    return f"{base_url.rstrip('/')}/ui/w/{ws}/runs/{quote(str(message['run_id']), safe='')}"


def headline(message: dict[str, Any]) -> str:
    """`weather/jobs.load run #12 failed`, or the test's line."""
    what = HEADLINES.get(str(message["event"]), str(message["event"]))
    if message.get("run_id") is None:
        return f"dockyard {what} for workspace {message['workspace']}"
    return f"{message['workspace']}/{message['job']} run #{message['run_number']} {what}"


# the generic webhook ------------------------------------------------------------------------
def webhook_body(message: dict[str, Any], delivery_id: int, url: str | None) -> bytes:
    """The JSON a webhook receives (docs/alerts.md lists its fields)."""
    body = {
        "delivery_id": delivery_id,
        "event": message["event"],
        "summary": headline(message),
        "workspace": message["workspace"],
        "job": message["job"],
        "run_id": message["run_id"],
        "run_number": message["run_number"],
        "status": message["status"],
        "reason": message["reason"],
        "trigger": message["trigger"],
        "finished_at": message["finished_at"],
        "url": url,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + body): the timestamp is signed
    with the body, so a captured delivery cannot be replayed later under a new timestamp."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (docs/alerts.md shows it standalone); used by the tests."""
    try:
        expected = signature(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, header)


# Slack ----------------------------------------------------------------------------------------
def slack_body(message: dict[str, Any], url: str | None) -> bytes:
    """An incoming webhook's `{"text", "blocks"}`: `text` is the notification's plain form."""
    title = headline(message)
    reason = message.get("reason")
    short = clip(str(reason), 300) if reason else None
    text = title + (f": {short}" if short else "") + (f" {url}" if url else "")
    lines = [f"*{_slack_escape(title)}*"]
    if reason:
        lines.append(f"```{_slack_escape(str(reason))}```")
    if url:
        lines.append(f"<{_slack_escape(url)}|Open the run>")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]
    return json.dumps({"text": text, "blocks": blocks}, ensure_ascii=False).encode()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# e-mail ---------------------------------------------------------------------------------------
def email(message: dict[str, Any], url: str | None, sender: str, to: list[str]) -> EmailMessage:
    """A plain-text e-mail; the subject is the headline (and the reason's start)."""
    reason = message.get("reason")
    subject = "[dockyard] " + headline(message)
    if reason:
        subject += ": " + clip(str(reason), 120)
    mail = EmailMessage()
    mail["Subject"] = _header(subject)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="dockyard")
    lines = [headline(message), ""]
    for label, key in (
        ("Workspace", "workspace"),
        ("Job", "job"),
        ("Run", "run_number"),
        ("Status", "status"),
        ("Trigger", "trigger"),
        ("Finished", "finished_at"),
    ):
        if message.get(key) is not None:
            lines.append(f"{label}: {message[key]}")
    if reason:
        lines += ["", "Reason:", str(reason)]
    if url:
        lines += ["", f"Run page: {url}"]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def _header(text: str) -> str:
    """A header value on one line (a reason may hold newlines and control characters)."""
    return _CONTROLS.sub(" ", text.replace("\r", " ").replace("\n", " "))
