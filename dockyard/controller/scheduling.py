"""Pure scheduling decisions: when a timed trigger fires, which window a run covers, whether
its upstream is fresh and whether concurrency allows it. Time is always a parameter; the
semantics are dlt's (through `dltadapter`); nothing here touches the database.

Catch-up policy (documented in docs/scheduling.md): when the scheduler finds a trigger whose
due time has passed, however many ticks were missed, it fires once, for the latest elapsed
tick. Interval jobs do not lose the missed ticks: their window starts at the end of the last
completed one, so the missed time is folded into that one run.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dockyard.controller import dltadapter

JobDef = dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """What a run will be: its window, or why it is skipped."""

    window: Window | None
    skip_reason: str | None = None


def window(
    job_def: JobDef,
    trigger: str,
    at: datetime,
    completed_end: datetime | None,
    refresh: bool,
) -> Decision:
    """The `[start, end)` a run fired at `at` covers.

    Jobs with `interval=` continue from the end of their last completed window (missed ticks
    are folded in), start at `interval.start` on their first run or after a refresh, and are
    clamped to the declared range. Other jobs get dlt's natural window for the trigger that
    fired (the elapsed cron interval for `schedule:`, `[now, now)` for events and manual runs).
    """
    tz = dltadapter.job_timezone(job_def)
    declared = dltadapter.declared_range(job_def)
    if declared is None:
        start, end = dltadapter.natural_window(_math_trigger(job_def, trigger), at, tz)
        return Decision(Window(start, end))
    begin, until = declared
    end = dltadapter.natural_window(_math_trigger(job_def, trigger), at, tz)[1]
    if until is not None:
        end = min(end, until)
    start = begin if refresh or completed_end is None else max(completed_end, begin)
    if end <= start:
        if until is not None and start >= until:
            return Decision(None, f"interval complete: everything up to {_t(until)} is done")
        if at < begin:
            return Decision(None, f"before the job's interval, which starts {_t(begin)}")
        return Decision(None, f"nothing new to cover: already done up to {_t(start)}")
    return Decision(Window(start, end))


def _math_trigger(job_def: JobDef, trigger: str) -> str:
    """Interval math uses the job's default (timed) trigger for manual and event runs, as dlt
    does, so a manual run of a scheduled job covers the schedule's window."""
    if dltadapter.trigger_type(trigger) in ("schedule", "every"):
        return trigger
    return str(job_def.get("default_trigger") or trigger)


def concurrency_limit(job_def: JobDef) -> int | None:
    """`execute.concurrency`: 1 when absent, None (unlimited) when null."""
    execute = job_def.get("execute") or {}
    if "concurrency" not in execute:
        return 1
    limit = execute["concurrency"]
    return None if limit is None else int(limit)


def concurrency_skip(job_def: JobDef, active_numbers: list[int]) -> str | None:
    limit = concurrency_limit(job_def)
    if limit is None or len(active_numbers) < limit:
        return None
    runs = ", ".join(f"#{n}" for n in sorted(active_numbers))
    return f"concurrency limit {limit} reached: run {runs} still active"


def freshness_skip(
    job_def: JobDef,
    upstream: dict[str, JobDef],
    prev_ends: dict[str, datetime | None],
    now: datetime,
) -> str | None:
    """Why the upstream is not fresh, in words, or None when the gate is open."""
    stale = dltadapter.check_fresh(job_def, upstream, prev_ends, now)
    if not stale:
        return None
    return "; ".join(
        _explain(ref, upstream.get(ref), prev_ends.get(ref), now, why) for ref, why in stale.items()
    )


def _explain(ref: str, job: JobDef | None, end: datetime | None, now: datetime, why: str) -> str:
    if job is None:
        return f"upstream {ref}: not deployed"
    if why.startswith(f"upstream {ref} is"):  # dlt's own sentence is clear (interactive)
        return why
    if end is None:
        return f"upstream {ref}: no completed run yet (or refreshed since)"
    needed = dltadapter.cron_floor(job, now)
    kind = dltadapter.trigger_type(job["default_trigger"]) if job.get("default_trigger") else ""
    if kind == "schedule" and needed is not None:
        return f"upstream {ref}: last completed interval ends {_t(end)}, needs ≥ {_t(needed)}"
    if kind == "every":
        period = dltadapter.trigger_period_s(job["default_trigger"])
        return (
            f"upstream {ref}: last completed interval ended {_t(end)},"
            f" more than one period ({period:g}s) ago"
        )
    return f"upstream {ref}: {why}"


def _t(value: datetime) -> str:
    return (
        value.strftime("%Y-%m-%d %H:%M:%S UTC")
        if value.second
        else value.strftime("%Y-%m-%d %H:%M UTC")
    )
