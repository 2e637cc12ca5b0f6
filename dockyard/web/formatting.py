"""Pure helpers the dashboard's templates use: durations, relative times, trigger words and
the opaque cursors of keyset pagination. No I/O, so they are unit-tested on their own.
"""

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from dockyard.errors import InvalidInput

WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def duration(seconds: float | None) -> str:
    """`850ms`, `4.2s`, `3m 05s`, `2h 04m`, `3d 4h`; an empty string for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def run_duration(run: dict[str, Any], now: datetime) -> str:
    """How long a run (its JSON) ran, or has been running until `now`."""
    started = parse(run.get("started_at"))
    if started is None:
        return ""
    ended = parse(run.get("finished_at")) or now
    return duration((ended - started).total_seconds())


def ago(value: datetime | str | None, now: datetime) -> str:
    """`just now`, `5 min ago`, `3 h ago`, `2 d ago`; `in 4 min` for future times."""
    at = parse(value) if isinstance(value, str) else value
    if at is None:
        return ""
    delta = (now - at).total_seconds()
    future = delta < 0
    seconds = abs(delta)
    if seconds < 45:
        return "in a moment" if future else "just now"
    if seconds < 3600:
        text = f"{round(seconds / 60)} min"
    elif seconds < 86400:
        text = f"{round(seconds / 3600)} h"
    else:
        text = f"{round(seconds / 86400)} d"
    return f"in {text}" if future else f"{text} ago"


def parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def when(value: str | datetime | None) -> str:
    """An instant as `2026-03-04 10:05:00 UTC` (ISO strings from the API as they come)."""
    at = parse(value) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


def short_sha(sha: str | None) -> str:
    return sha[:12] if sha else ""


# trigger words -------------------------------------------------------------------------------
_NUMBER = re.compile(r"^\d+$")


def cron_words(expression: str) -> str | None:
    """Common cron shapes in words (`*/15 * * * *` → `every 15 minutes`); None otherwise."""
    fields = expression.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    if month != "*":
        return None
    if minute.startswith("*/") and _NUMBER.match(minute[2:]) and (hour, dom, dow) == ("*",) * 3:
        step = int(minute[2:])
        return "every minute" if step == 1 else f"every {step} minutes"
    if minute == "*" and (hour, dom, dow) == ("*",) * 3:
        return "every minute"
    if not _NUMBER.match(minute):
        return None
    if hour == "*" and (dom, dow) == ("*", "*"):
        return f"hourly at :{int(minute):02d}"
    if hour.startswith("*/") and _NUMBER.match(hour[2:]) and (dom, dow) == ("*", "*"):
        return f"every {int(hour[2:])} hours at :{int(minute):02d}"
    if not _NUMBER.match(hour):
        return None
    at = f"{int(hour):02d}:{int(minute):02d}"
    return _day_words(dom, dow, at)


def _day_words(dom: str, dow: str, at: str) -> str | None:
    if (dom, dow) == ("*", "*"):
        return f"daily at {at}"
    if dom == "*" and _NUMBER.match(dow) and int(dow) <= 7:
        return f"{WEEKDAYS[int(dow) % 7]}s at {at}"
    if dom == "*" and dow == "1-5":
        return f"weekdays at {at}"
    if dow == "*" and _NUMBER.match(dom):
        return f"monthly on day {int(dom)} at {at}"
    return None


def trigger_words(trigger: str, humanized: str) -> str:
    """The readable text of a trigger: dlt's own words, with common crons spelled out."""
    kind, _, rest = trigger.partition(":")
    if kind == "schedule":
        words = cron_words(rest.strip())
        if words is not None:
            return f"{words} ({rest.strip()})"
    return humanized


# keyset cursors ------------------------------------------------------------------------------
def encode_cursor(created_at: str, run_id: str) -> str:
    """The position after a run in a newest-first list, as an opaque URL-safe token."""
    raw = f"{created_at}|{run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str]:
    """`(created_at, run id)` from `encode_cursor`; a damaged token is refused."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, _, run_id = raw.partition("|")
        at = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("bad page cursor; start again from the first page") from exc
    if not run_id or at.tzinfo is None:
        raise InvalidInput("bad page cursor; start again from the first page")
    return at, run_id


# statuses ----------------------------------------------------------------------------------
STATUS_CLASS = {
    "completed": "ok",
    "failed": "bad",
    "cancelled": "muted",
    "skipped": "muted",
    "pending": "wait",
    "starting": "live",
    "running": "live",
    "cancelling": "live",
}


def status_class(status: str | None) -> str:
    return STATUS_CLASS.get(status or "", "muted")
