"""When timed triggers fire: the next tick, one fire for any number of missed ticks, the
upcoming ticks `job info` shows. Pure: time is a parameter; the semantics are dlt's (through
`dltadapter`); nothing here touches the database.

Catch-up policy (documented in docs/scheduling.md): when the scheduler finds a trigger whose
due time has passed, however many ticks were missed, it fires once, for the latest elapsed
tick. Interval jobs do not lose the missed ticks: their window starts at the end of the last
completed one (`lifecycle/rules.py`), so the missed time is folded into that one run.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from dockyard.controller import dltadapter


@dataclass(frozen=True, slots=True)
class Fire:
    """A due trigger: the tick it fires for and when it is due next (None: never again)."""

    tick: datetime
    next_fire_at: datetime | None
    missed: int


def first_fire(trigger: str, tz: str, now: datetime) -> datetime:
    """When a newly deployed (or re-activated) timed trigger first fires: its next tick."""
    return dltadapter.next_fire(trigger, now, tz)


def due(trigger: str, tz: str, next_fire_at: datetime | None, now: datetime) -> Fire | None:
    """The fire for `now`, if the trigger is due; one fire for any number of missed ticks."""
    if next_fire_at is None or next_fire_at > now:
        return None
    kind = dltadapter.trigger_type(trigger)
    if kind == "once":
        # the tick is the `once` instant itself, so the run's unique (job, trigger, tick)
        # holds even if the trigger's state were ever rebuilt
        return Fire(dltadapter.once_at(trigger), None, 0)
    if kind == "every":
        period = timedelta(seconds=dltadapter.trigger_period_s(trigger))
        missed = math.floor((now - next_fire_at) / period)
        tick = next_fire_at + missed * period
        return Fire(tick, tick + period, missed)
    # schedule: the latest elapsed cron tick, in the job's timezone
    tick = dltadapter.natural_window(trigger, now, tz)[1]
    tick = max(tick, next_fire_at)
    return Fire(
        tick, dltadapter.next_fire(trigger, now, tz), _missed(trigger, tz, next_fire_at, tick)
    )


def _missed(trigger: str, tz: str, first: datetime, last: datetime, cap: int = 1000) -> int:
    count, tick = 0, first
    while tick < last and count < cap:
        tick = dltadapter.next_fire(trigger, tick, tz)
        count += 1
    return count


def upcoming(
    trigger: str, tz: str, next_fire_at: datetime | None, count: int = 5
) -> list[datetime]:
    """The next `count` fire times from the stored next one (what `job info` shows)."""
    if next_fire_at is None:
        return []
    kind = dltadapter.trigger_type(trigger)
    if kind == "once":
        return [next_fire_at]
    times = [next_fire_at]
    while len(times) < count:
        if kind == "every":
            period = timedelta(seconds=dltadapter.trigger_period_s(trigger))
            times.append(times[-1] + period)
        else:
            times.append(dltadapter.next_fire(trigger, times[-1], tz))
    return times
