"""The only place that reads the wall clock; everything else takes a `Clock`."""

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def utcnow() -> datetime:
    """For leaf code without a clock at hand (record timestamps, never scheduling decisions)."""
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`-free `+00:00` offset, or None."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # as read from the database: no conversion needed
        return value.isoformat()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


class FakeClock:
    """A clock tests move by hand (shipped with the port it fakes)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def set(self, value: datetime) -> None:
        self._mono += max(0.0, (value - self._now).total_seconds())
        self._now = value

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.set(self._now + timedelta(seconds=seconds))
