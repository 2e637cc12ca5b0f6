"""Where runs begin and end. Every path that makes a run (a trigger, a schedule tick, a
follow-up) goes through `Dispatcher.create`, and every end through `Dispatcher.finish`, so
concurrency, freshness gates, interval windows, refresh and follow-ups are decided in one
place, in the same transaction as the run row they concern.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.controller import dltadapter, gitstore, runtime_config, scheduling
from dockyard.controller.store.models import IntervalWindow, Job, Run, Workspace
from dockyard.errors import Conflict

ACTIVE = scheduling.ACTIVE
LAUNCHED = ("starting", "running", "cancelling")


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


class Dispatcher:
    def __init__(
        self, repos_dir: Path, defaults: runtime_config.Defaults, executor: str = "local"
    ) -> None:
        self.repos_dir = repos_dir
        self.defaults = defaults
        self.executor = executor  # the server's default; a workspace may choose another
        self._config_names: dict[tuple[str, str], list[str]] = {}
        self._follower_index: dict[tuple[int, str | None], dict[str, list[int]]] = {}

    # begin ----------------------------------------------------------------------------
    def create(
        self, session: Session, ws: Workspace, job: Job, request: Request, now: datetime
    ) -> Run:
        """A run for `job`: `pending`, or `skipped` with the reason a person can read."""
        if job.status != "active":
            raise Conflict(f"job {job.job_ref} is archived; deploy it again to run it")
        if ws.deployment_version is None:
            raise Conflict(f"workspace {ws.name} has nothing deployed yet; run `dockyard deploy`")
        job_def = job.definition
        refresh, _ = dltadapter.refresh_for(job_def, request.refresh or job.refresh_pending)
        skip = scheduling.concurrency_skip(job_def, _active_numbers(session, job))
        if skip is None and request.gated and job_def.get("freshness"):
            skip = _freshness_skip(session, ws, job, now)
        at = request.scheduled_for or now
        decision = scheduling.window(
            job_def, request.trigger, at, completed_end(session, job), refresh
        )
        skip = skip or decision.skip_reason or _window_taken(session, job, decision, refresh)
        run = self._row(session, ws, job, request, now, refresh, decision, skip)
        if skip is None:
            _begin(session, job, run, decision, refresh, request.refresh, now)
        return run

    def _row(
        self,
        session: Session,
        ws: Workspace,
        job: Job,
        request: Request,
        now: datetime,
        refresh: bool,
        decision: scheduling.Decision,
        skip: str | None,
    ) -> Run:
        number = session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(runs_created=Job.runs_created + 1)
            .returning(Job.runs_created)
            # no ORM bookkeeping: matching this UPDATE against every object in the session
            # made bulk triggers quadratic
            .execution_options(synchronize_session=False)
        ).scalar_one()
        timeout, grace = runtime_config.timeouts(job.definition, self.defaults)
        window = decision.window
        status = "skipped" if skip else ("starting" if request.prepared else "pending")
        run = Run(
            id=request.run_id or str(uuid.uuid4()),
            workspace_id=ws.id,
            job_id=job.id,
            number=number,
            trigger=request.trigger,
            status=status,
            claimed_at=now if status == "starting" else None,
            executor="local" if request.prepared else (ws.executor or self.executor),
            reason=skip,
            created_at=now,
            finished_at=now if skip else None,
            refresh=refresh,
            profile=runtime_config.profile(job.definition, self.config_names(ws)),
            deployment_version=ws.deployment_version,
            configuration_version=ws.configuration_version,
            interval_start=window.start if window else None,
            interval_end=window.end if window else None,
            timeout_s=timeout,
            grace_s=grace,
            scheduled_for=request.scheduled_for,
            cause_run_id=request.cause_run_id,
        )
        session.add(run)
        session.flush()
        return run

    def config_names(self, ws: Workspace) -> list[str]:
        sha = ws.configuration_version
        if sha is None:
            return []
        key = (ws.name, sha)
        if key not in self._config_names:
            repo = gitstore.open_repo(self.repos_dir / f"{ws.name}.git")
            self._config_names[key] = [
                p for p, _ in gitstore.iter_files(repo, sha, gitstore.CONFIG)
            ]
        return self._config_names[key]

    # end ------------------------------------------------------------------------------
    def finish(
        self,
        session: Session,
        run: Run,
        expected: Sequence[str],
        status: str,
        now: datetime,
        **values: Any,
    ) -> list[Run]:
        """End `run` if it is still in one of `expected`; returns the follow-up runs made."""
        moved = session.execute(
            update(Run)
            .where(Run.id == run.id, Run.status.in_(expected))
            .values(status=status, finished_at=now, **values)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            return []
        _close_window(session, run.id, status)
        job = session.get(Job, run.job_id)
        ws = session.get(Workspace, run.workspace_id)
        assert job is not None and ws is not None
        if (
            status == "completed"
            and run.refresh
            and dltadapter.refresh_policy(job.definition) == "always"
        ):
            _cascade(session, ws, job, now)
        return self._follow_ups(session, ws, job, run, status, now)

    def _followers(self, session: Session, ws: Workspace) -> dict[str, list[int]]:
        """`job.success:`/`job.fail:` trigger -> the active jobs it starts, built once per
        reconciled version of the workspace (job definitions change only on reconcile)."""
        key = (ws.id, ws.reconciled_sha)
        if key not in self._follower_index:
            index: dict[str, list[int]] = {}
            for job in _active_jobs(session, ws):
                for trigger in job.definition.get("triggers") or []:
                    if str(trigger).startswith(("job.success:", "job.fail:")):
                        index.setdefault(str(trigger), []).append(job.id)
            self._follower_index = {k: v for k, v in self._follower_index.items() if k[0] != ws.id}
            self._follower_index[key] = index
        return self._follower_index[key]

    def _follow_ups(
        self, session: Session, ws: Workspace, upstream: Job, run: Run, status: str, now: datetime
    ) -> list[Run]:
        event = {"completed": "job.success", "failed": "job.fail"}.get(status)
        if event is None:
            return []
        trigger = f"{event}:{upstream.job_ref}"
        made = []
        for job_id in self._followers(session, ws).get(trigger, []):
            job = session.get(Job, job_id)
            if job is None or job.status != "active":
                continue
            try:
                with session.begin_nested():
                    made.append(
                        self.create(session, ws, job, Request(trigger, cause_run_id=run.id), now)
                    )
            except IntegrityError:
                continue  # made already (the finish is being replayed after a restart)
        return made


def _active_jobs(session: Session, ws: Workspace) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.workspace_id == ws.id, Job.status == "active"))
    )


def _active_numbers(session: Session, job: Job) -> list[int]:
    return list(
        session.scalars(select(Run.number).where(Run.job_id == job.id, Run.status.in_(ACTIVE)))
    )


def completed_end(session: Session, job: Job) -> datetime | None:
    if not job.definition.get("interval"):
        return None
    end: datetime | None = session.scalar(
        select(func.max(IntervalWindow.end)).where(
            IntervalWindow.job_id == job.id,
            IntervalWindow.epoch == job.interval_epoch,
            IntervalWindow.status == "completed",
        )
    )
    return end


def _window_taken(
    session: Session, job: Job, decision: scheduling.Decision, refresh: bool
) -> str | None:
    """A window that another run is already processing is not started twice."""
    if decision.window is None or not job.definition.get("interval") or refresh:
        return None
    number = session.scalar(
        select(Run.number)
        .join(IntervalWindow, IntervalWindow.run_id == Run.id)
        .where(
            IntervalWindow.job_id == job.id,
            IntervalWindow.epoch == job.interval_epoch,
            IntervalWindow.start == decision.window.start,
        )
    )
    if number is None:
        return None
    return (
        f"the window from {decision.window.start.isoformat()} is being processed by run #{number}"
    )


def _begin(
    session: Session,
    job: Job,
    run: Run,
    decision: scheduling.Decision,
    refresh: bool,
    requested_refresh: bool,
    now: datetime,
) -> None:
    if refresh and job.definition.get("interval"):
        job.interval_epoch += 1  # back to interval.start; old windows stay as history
    if job.refresh_pending:
        job.refresh_pending = False
    if decision.window is not None and job.definition.get("interval"):
        session.add(
            IntervalWindow(
                job_id=job.id,
                epoch=job.interval_epoch,
                start=decision.window.start,
                end=decision.window.end,
                run_id=run.id,
                status="running",
            )
        )
    if requested_refresh and refresh:
        ws = session.get(Workspace, job.workspace_id)
        assert ws is not None
        _cascade(session, ws, job, now)
        job.reset_at = now


def _close_window(session: Session, run_id: str, status: str) -> None:
    if status == "completed":
        session.execute(
            update(IntervalWindow).where(IntervalWindow.run_id == run_id).values(status="completed")
        )
    else:  # not covered: folded into the next window
        session.execute(delete(IntervalWindow).where(IntervalWindow.run_id == run_id))


def _cascade(session: Session, ws: Workspace, root: Job, now: datetime) -> None:
    """dlt's refresh cascade: every freshness-downstream job (up to a `block`) refreshes on
    its next run, and counts as not fresh for its own downstream until then."""
    jobs = {j.job_ref: j for j in _active_jobs(session, ws)}
    targets = dltadapter.cascade_targets(root.job_ref, {r: j.definition for r, j in jobs.items()})
    for ref in targets:
        jobs[ref].refresh_pending = True
        jobs[ref].reset_at = now


def freshness_reason(session: Session, ws: Workspace, job: Job, now: datetime) -> str | None:
    """Why the job's freshness gate is closed now (None: open, or no gate)."""
    if not job.definition.get("freshness"):
        return None
    return _freshness_skip(session, ws, job, now)


def interval_state(session: Session, job: Job, now: datetime) -> dict[str, Any] | None:
    """The declared range, how far the ledger got and the window a run now would cover."""
    declared = dltadapter.declared_range(job.definition)
    if declared is None:
        return None
    done = completed_end(session, job)
    trigger = str(job.definition.get("default_trigger") or "manual:")
    decision = scheduling.window(job.definition, trigger, now, done, job.refresh_pending)
    window = decision.window
    return {
        "start": declared[0].isoformat(),
        "end": declared[1].isoformat() if declared[1] else None,
        "completed_up_to": done.isoformat() if done else None,
        "next_window": [window.start.isoformat(), window.end.isoformat()] if window else None,
        "next_window_skip_reason": decision.skip_reason,
    }


def _freshness_skip(session: Session, ws: Workspace, job: Job, now: datetime) -> str | None:
    refs = dltadapter.freshness_refs(job.definition)
    upstream = {
        j.job_ref: j
        for j in session.scalars(
            select(Job).where(
                Job.workspace_id == ws.id, Job.job_ref.in_(refs), Job.status == "active"
            )
        )
    }
    prev_ends = {ref: _last_completed_end(session, up) for ref, up in upstream.items()}
    return scheduling.freshness_skip(
        job.definition, {r: u.definition for r, u in upstream.items()}, prev_ends, now
    )


def _last_completed_end(session: Session, job: Job) -> datetime | None:
    """The interval end of the job's last completed run since its last refresh reset."""
    query = select(func.max(Run.interval_end)).where(
        Run.job_id == job.id, Run.status == "completed"
    )
    if job.reset_at is not None:
        query = query.where(Run.finished_at > job.reset_at)
    end: datetime | None = session.scalar(query)
    return end
