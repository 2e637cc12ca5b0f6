"""Which alert an ended run makes, and the channels' rules: pure functions, no I/O.

Four events: `failed` (any other failure), `timeout` (stopped at its deadline), `lost` (the
controller lost the run: stuck in `pending`/`starting` past its bound, its Docker engine or
container gone, its supervisor gone without a status, an unreadable exit record) and
`recovered` (completed, and the job's previous completed-or-failed run had failed).
Cancelled and skipped runs make none.
"""

import re
from urllib.parse import urlsplit

from dockyard.errors import InvalidInput

EVENTS = ("failed", "timeout", "lost", "recovered")
KINDS = ("webhook", "slack", "email")
SECURITY = ("starttls", "ssl", "none")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# a address as SMTP accepts it, simply: one @, no spaces, no header-breaking characters
ADDRESS = re.compile(r"[^@\s<>,;\"'\\]{1,64}@[A-Za-z0-9.-]{1,253}")
HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")
MAX_URL = 2048
MAX_RECIPIENTS = 20
LOOPBACK = ("127.0.0.1", "::1", "localhost")

# how an exit the controller did not see happen reads (executors' own reasons)
_LOST_MARKS = (
    "lost:",  # supervisor gone, container gone, engine unreachable past the give-up time
    "the docker engine stopped or restarted",
)


def event_for(status: str, stop_reason: str | None, lost: bool, previous: str | None) -> str | None:
    """The alert an end makes: `status` the run's final status, `stop_reason` why dockyard
    stopped it (if it did), `lost` whether the controller lost it, `previous` the status of
    the job's previous completed-or-failed run (for a completed one)."""
    if status == "failed":
        if lost:
            return "lost"
        return "timeout" if stop_reason == "timeout" else "failed"
    if status == "completed" and previous == "failed":
        return "recovered"
    return None


def lost_exit(error: str | None) -> bool:
    """Whether an executor's exit error says the run was lost rather than that it failed
    (an out-of-memory kill is a failure: the run's own doing)."""
    if not error:
        return False
    if error.startswith(_LOST_MARKS):
        return True
    return error.startswith("the run's exit record") and "is unreadable" in error


# channels ---------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidInput(
            f"alert channel name {name!r} must be 1-64 of a-z, 0-9, '_', '.', '-' (e.g. ops-slack)"
        )
    return name


def check_events(events: list[str] | None) -> list[str]:
    """The events a channel wants, in the canonical order; none given: all four."""
    if not events:
        return list(EVENTS)
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidInput(f"unknown alert event {unknown[0]!r}; choose from {', '.join(EVENTS)}")
    return [e for e in EVENTS if e in events]


def check_url(url: str, what: str, https_only: bool = False) -> str:
    """An http(s) URL (https only for Slack, except on loopback for a local stand-in).
    Any host is allowed: an admin configures it (docs/alerts.md, "Where alerts may go")."""
    clean = url.strip()
    parts = urlsplit(clean)
    allowed = ("https",) if https_only and parts.hostname not in LOOPBACK else ("http", "https")
    if len(clean) > MAX_URL or parts.scheme not in allowed or not parts.hostname:
        example = (
            "https://hooks.slack.com/services/…" if https_only else "https://ops.example.com/hook"
        )
        raise InvalidInput(f"{what} is not an {' or '.join(allowed)} URL (e.g. {example})")
    if any(c.isspace() or ord(c) < 32 for c in clean):
        raise InvalidInput(f"{what} has spaces or control characters; give the URL itself")
    return clean


def check_smtp(fields: dict[str, object]) -> dict[str, object]:
    """host, port, security, username, from, to — checked; one-line errors."""
    host = str(fields.get("host") or "").strip()
    if not HOST.fullmatch(host):
        raise InvalidInput(f"--host {host!r} is not a host name or address (e.g. smtp.example.com)")
    security = str(fields.get("security") or "starttls")
    if security not in SECURITY:
        raise InvalidInput(f"--security {security!r}: choose from {', '.join(SECURITY)}")
    port = _port(fields.get("port"), security)
    sender = str(fields.get("sender") or "").strip()
    if not ADDRESS.fullmatch(sender):
        raise InvalidInput(
            f"--from {sender!r} is not an e-mail address (e.g. dockyard@example.com)"
        )
    to = [str(t).strip() for t in _as_list(fields.get("to")) if str(t).strip()]
    if not to or len(to) > MAX_RECIPIENTS:
        raise InvalidInput(f"give 1 to {MAX_RECIPIENTS} --to addresses")
    for address in to:
        if not ADDRESS.fullmatch(address):
            raise InvalidInput(f"--to {address!r} is not an e-mail address")
    username = str(fields.get("username") or "").strip() or None
    if username is not None and (len(username) > 255 or any(ord(c) < 33 for c in username)):
        raise InvalidInput("--username is too long or has spaces or control characters")
    return {
        "host": host,
        "port": port,
        "security": security,
        "username": username,
        "sender": sender,
        "to": to,
    }


def _port(value: object, security: str) -> int:
    if value in (None, ""):
        return 465 if security == "ssl" else 587 if security == "starttls" else 25
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise InvalidInput(f"--port {value!r} is not a port number (e.g. 587)")
    return port


def _as_list(value: object) -> list[object]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        return [p for p in re.split(r"[,\s]+", value) if p]
    return []


def hint(kind: str, secret: str | None) -> str | None:
    """What is shown of a channel's secret: a webhook secret's first characters, "set"."""
    if not secret:
        return None
    if kind == "webhook":
        return secret[:6] + "…"
    return "set"
