"""The rules a new run is checked against: which window it covers, whether its upstream is
fresh, whether its job's concurrency allows it. Pure: time and facts are parameters; the
semantics are dlt's (through `dltadapter`). `decisions.decide` applies them in order.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard.controller import dltadapter

JobDef = dict[str, Any]


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


def next_start(job_def: JobDef, completed_end: datetime | None) -> datetime | None:
    """Where the ledger's next window starts: the end of the last completed one, else
    `interval.start` (None for a job without an interval)."""
    declared = dltadapter.declared_range(job_def)
    if declared is None:
        return None
    begin = declared[0]
    return begin if completed_end is None else max(completed_end, begin)


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
