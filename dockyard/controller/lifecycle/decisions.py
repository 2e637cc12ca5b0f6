"""The lifecycle's pure decisions: what a new run becomes, and how an ended one ended.

No database, no git, no clock: the facts and `now` are parameters, so every rule here is
tested in microseconds (tests/unit/test_lifecycle_decisions.py). The semantics of triggers,
windows, freshness and refresh are dlt's, through `dltadapter` and `scheduling`.
"""

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dockyard.controller import dltadapter
from dockyard.controller.lifecycle import rules
from dockyard.controller.lifecycle.status import RunStatus

JobDef = dict[str, Any]
SERVER_STOPPED = "server stopped"  # the reason of an app run ended by the server's shutdown


@dataclass(frozen=True, slots=True)
class Request:
    """Why a run is made: the trigger that fired and what identifies it uniquely."""

    trigger: str
    scheduled_for: datetime | None = None
    cause_run_id: str | None = None
    refresh: bool = False
    gated: bool = True  # freshness gates apply; a person starting a job by hand is not gated
    run_id: str | None = None  # chosen ahead for a run whose process is already prepared
    prepared: bool = False  # its process waits to be released: `starting`, not `pending`
    # a re-run (`rerun_of`: the run it runs again) covers that run's `window` again, with
    # that run's trigger and refresh; it never takes the job's pending refresh
    rerun_of: str | None = None
    window: rules.Window | None = None
    # who or what asked (`audit.Actor.label`), and whether a person did: a manual launch of
    # a scheduled job fires the schedule's trigger (dlt's rule), so `manual` tells them apart
    triggered_by: str | None = None
    manual: bool = False


class JobView(Protocol):
    """What creation reads of a job (the ORM row, or anything shaped like it)."""

    @property
    def definition(self) -> JobDef: ...

    @property
    def refresh_pending(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything creation needs from the database, read at once (`facts.read`)."""

    active_numbers: tuple[int, ...] = ()  # numbers of the job's pending/starting/running runs
    completed_end: datetime | None = None  # the interval ledger: end of the last completed window
    taken_windows: Mapping[datetime, int] = field(default_factory=dict)  # start → run number
    upstream: Mapping[str, JobDef] = field(default_factory=dict)  # freshness upstream, active
    upstream_ends: Mapping[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Creation:
    """What a new run is: its status (with the reason when skipped) and what starting it
    changes in the job's ledger."""

    status: RunStatus
    reason: str | None
    window: rules.Window | None
    refresh: bool  # the run refreshes (dlt's refresh policy applied to what was asked)
    new_epoch: bool = False  # an interval job refreshing: back to `interval.start`
    record_window: bool = False  # the window goes into the ledger as `running`
    cascade: bool = False  # a requested refresh marks freshness-downstream jobs now

    @property
    def skipped(self) -> bool:
        return self.status is RunStatus.SKIPPED


def decide(job: JobView, request: Request, facts: Facts, now: datetime) -> Creation:
    """`pending` (or `starting` for a prepared run), or `skipped` with a reason a person
    reads: concurrency first, then freshness (unless a person started it), then the window."""
    job_def = job.definition
    pending = job.refresh_pending and request.rerun_of is None
    refresh, _ = dltadapter.refresh_for(job_def, request.refresh or pending)
    skip = rules.concurrency_skip(job_def, list(facts.active_numbers))
    if skip is None and request.gated and job_def.get("freshness"):
        skip = rules.freshness_skip(job_def, dict(facts.upstream), dict(facts.upstream_ends), now)
    if request.window is not None:  # a re-run: that window again, whatever the ledger says
        decision = rules.Decision(request.window)
    else:
        at = request.scheduled_for or now
        decision = rules.window(job_def, request.trigger, at, facts.completed_end, refresh)
    skip = skip or decision.skip_reason or _window_taken(job_def, decision, refresh, facts)
    if skip is not None:
        return Creation(RunStatus.SKIPPED, skip, decision.window, refresh)
    interval = bool(job_def.get("interval"))
    return Creation(
        RunStatus.STARTING if request.prepared else RunStatus.PENDING,
        None,
        decision.window,
        refresh,
        new_epoch=refresh and interval,
        record_window=interval and _records(job_def, request, decision.window, refresh, facts),
        # a re-run's refresh cascaded when its run was made: downstream is marked already
        cascade=request.refresh and refresh and request.rerun_of is None,
    )


def _records(
    job_def: JobDef,
    request: Request,
    window: rules.Window | None,
    refresh: bool,
    facts: Facts,
) -> bool:
    """Whether the run's window goes into the ledger. Every new window does; a re-run's only
    when it is the next one the ledger would cover (its run failed and nothing covered it
    since) or it refreshes (a new epoch from `interval.start`). A re-run of time already
    covered processes it again and leaves the ledger as it is: nothing is covered twice."""
    if window is None:
        return False
    if request.window is None or refresh:
        return True
    return window.start == rules.next_start(job_def, facts.completed_end)


def _window_taken(
    job_def: JobDef, decision: rules.Decision, refresh: bool, facts: Facts
) -> str | None:
    """A window another run is already processing is not started twice."""
    if decision.window is None or not job_def.get("interval") or refresh:
        return None
    number = facts.taken_windows.get(decision.window.start)
    if number is None:
        return None
    return (
        f"the window from {decision.window.start.isoformat()} is being processed by run #{number}"
    )


class Exit(Protocol):
    """How a run's process ended, as an executor reports it."""

    @property
    def returncode(self) -> int | None: ...

    @property
    def signal(self) -> int | None: ...

    @property
    def error(self) -> str | None: ...


def outcome(
    stop_reason: str | None, exit_status: Exit, idle_s: float = 0.0, raised: str | None = None
) -> tuple[RunStatus, str | None]:
    """Final status and reason from why we stopped it (if we did) and how it exited.
    `raised` is the exception the job ended with, read from its log (`failure.explain`): the
    reason of a job that exited non-zero by itself, instead of its exit code."""
    if stop_reason == "cancel":
        return RunStatus.CANCELLED, "cancelled by request"
    if stop_reason == "idle":
        return RunStatus.CANCELLED, f"stopped after {duration(idle_s)} idle"
    if stop_reason == "shutdown":
        return RunStatus.CANCELLED, SERVER_STOPPED
    if stop_reason == "timeout":
        return RunStatus.FAILED, "timeout"
    if exit_status.error:
        return RunStatus.FAILED, exit_status.error
    if exit_status.returncode == 0:
        return RunStatus.COMPLETED, None
    if exit_status.signal is not None:
        return RunStatus.FAILED, f"killed by signal {signal.Signals(exit_status.signal).name}"
    return RunStatus.FAILED, raised or f"exit code {exit_status.returncode}"


def follow_up_trigger(upstream_ref: str, status: RunStatus) -> str | None:
    """The event trigger an ended run fires (`job.success:<ref>`, `job.fail:<ref>`)."""
    event = {RunStatus.COMPLETED: "job.success", RunStatus.FAILED: "job.fail"}.get(status)
    return None if event is None else f"{event}:{upstream_ref}"


def cascades(status: RunStatus, refreshed: bool, job_def: JobDef) -> bool:
    """A completed refresh of an `always`-propagating job refreshes its downstream."""
    return (
        status is RunStatus.COMPLETED
        and refreshed
        and dltadapter.refresh_policy(job_def) == "always"
    )


def duration(seconds: float) -> str:
    """`300` → "5 min", `90` → "90 s", `7200` → "2 h" (for reasons a person reads)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
