"""The runner loop: claims pending runs, starts them, watches them end, enforces deadlines.

One thread ticks (woken at once when a run is created, else every half second); run
preparation (environment builds can take a while) happens on a small worker pool. Every state
change is a guarded UPDATE, and the executor keeps its state in files, so after a restart
running processes are adopted, and a run is never launched twice.
"""

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller import logs, prewarm, runs
from dockyard.controller.dispatch import Dispatcher
from dockyard.controller.executors.base import Executor, ExitStatus
from dockyard.controller.loop import Loop
from dockyard.controller.prepare import Preparer, launch_args
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)
TICK_S = 0.5
LAUNCHED = ("starting", "running", "cancelling")


class Runner(Loop):
    name = "runner"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        executor: Executor,
        preparer: Preparer,
        dispatcher: Dispatcher,
        on_finished: Callable[[str], None] | None = None,
        workers: int = 4,
        bounds: tuple[float, float] = (600.0, 1800.0),
    ) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.executor = executor
        self.preparer = preparer
        self.dispatcher = dispatcher
        self.pending_bound, self.starting_bound = bounds
        self.prewarmer_forget: Callable[[prewarm.Warm], None] | None = None
        self.on_finished = on_finished
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
        self._preparing: set[str] = set()
        self._lock = threading.Lock()
        executor.on_exit(self.wake)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        super().start()

    def on_stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def step(self) -> float:
        self.tick()
        return TICK_S

    def recover(self) -> None:
        """After a restart: runs whose preparation was cut short go back to `pending` (their
        process was never started); runs that were launched but not yet recorded as running
        are recorded now and watched like any other."""
        now = self.clock.now()
        with self.db.session() as session:
            for run in session.scalars(select(Run).where(Run.status == "starting")):
                run_dir = self.preparer.run_dir(run.id)
                if not self.executor.launched(run_dir):
                    runs.move(session, run.id, ["starting"], status="pending")
                    continue
                if self.executor.held_unreleased(run_dir):
                    # prepared ahead of its tick, never released: start it the ordinary way
                    prewarm.requeue_unreleased(self.executor, run_dir)
                    runs.move(session, run.id, ["starting"], status="pending")
                    continue
                runs.move(
                    session,
                    run.id,
                    ["starting"],
                    status="running",
                    started_at=now,
                    deadline_at=_deadline(session, run, now),
                )

    def prebuild(self, workspace: str) -> None:
        """Build the environments of a workspace's active batch jobs in the background after a
        deploy, so no run (and no prepared timed run) waits for a build. Interactive jobs'
        environments (the dashboard's is heavy) are built when first served."""
        self._pool.submit(self._prebuild, workspace)

    def _prebuild(self, workspace: str) -> None:
        try:
            with self.db.session() as session:
                ws = session.scalar(select(Workspace).where(Workspace.name == workspace))
                if ws is None or ws.deployment_version is None:
                    return
                jobs = list(
                    session.scalars(
                        select(Job).where(
                            Job.workspace_id == ws.id,
                            Job.status == "active",
                            Job.job_type == "batch",
                        )
                    )
                )
                self.preparer.build_envs(ws, jobs)
        except DockyardError as exc:
            log.warning(
                "environment prebuild failed",
                extra={"action": "prebuild", "workspace": workspace, "error": exc.message},
            )
        self.wake()

    def release_prepared(self, run_id: str, warm: prewarm.Warm) -> None:
        """The tick came: hand the prepared process its launch arguments, then record it."""
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            job = session.get(Job, run.job_id)
            ws = session.get(Workspace, run.workspace_id)
            assert job is not None and ws is not None and run.deployment_version is not None
            requirements = self.preparer.requirements(ws, run.deployment_version)
            entry_point = self.preparer.entry_point(job, run, requirements)
            released = self.executor.release(warm.run_dir, {"args": launch_args(run, entry_point)})
            if released:
                logs.system(warm.run_dir, "released the prepared process at its tick")
                crashpoints.reached("process_started")  # released, not yet recorded
            now = self.clock.now()
            if released:
                _mark_running(session, run, now, entry_point=entry_point)
            else:  # the prepared process is gone: start the run the ordinary way
                prewarm.requeue_unreleased(self.executor, warm.run_dir)
                runs.move(session, run_id, ["starting"], status="pending")
        if self.prewarmer_forget is not None:
            self.prewarmer_forget(warm)
        self.wake()

    # one tick ---------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock.now()
        self._bound(now)
        self._claim(now)
        self._watch(now)

    def _bound(self, now: datetime) -> None:
        """No run waits forever: stuck in `pending` or `starting` past its bound, it fails."""
        pending_before = now - timedelta(seconds=self.pending_bound)
        starting_before = now - timedelta(seconds=self.starting_bound)
        with self.db.session() as session:
            stuck = list(
                session.execute(
                    select(Run.id, Run.status).where(
                        ((Run.status == "pending") & (Run.created_at < pending_before))
                        | ((Run.status == "starting") & (Run.claimed_at < starting_before))
                    )
                )
            )
        for run_id, status in stuck:
            bound = self.pending_bound if status == "pending" else self.starting_bound
            if status == "starting" and self.executor.launched(self.preparer.run_dir(run_id)):
                continue  # its process exists: watched like a running run
            reason = f"stuck in {status} for more than {bound:g}s"
            if self._end(run_id, [status], "failed", reason=reason):
                logs.system(self.preparer.run_dir(run_id), f"run failed: {reason}")

    def _claim(self, now: datetime) -> None:
        with self.db.session() as session:
            pending = list(
                session.scalars(
                    select(Run.id).where(Run.status == "pending").order_by(Run.created_at)
                )
            )
            claimed = [
                rid
                for rid in pending
                if runs.move(session, rid, ["pending"], status="starting", claimed_at=now)
            ]
        for run_id in claimed:
            with self._lock:
                self._preparing.add(run_id)
            self._pool.submit(self._launch, run_id)

    def _watch(self, now: datetime) -> None:
        with self.db.session() as session:
            active = list(session.scalars(select(Run).where(Run.status.in_(LAUNCHED))))
        for run in active:
            with self._lock:
                if run.id in self._preparing:
                    continue
            run_dir = self.preparer.run_dir(run.id)
            status = self.executor.poll(run_dir)
            if status is not None:
                self._finish(run, status, now)
            else:
                self._enforce(run, now)

    # start ------------------------------------------------------------------------------
    def _launch(self, run_id: str) -> None:
        try:
            self._prepare_and_start(run_id)
        except DockyardError as exc:
            self._fail_start(run_id, exc.message)
        except Exception as exc:  # a run must end with a reason, whatever went wrong
            log.exception("run start failed", extra={"action": "start_run", "run_id": run_id})
            self._fail_start(run_id, f"could not start: {exc!r}")
        finally:
            with self._lock:
                self._preparing.discard(run_id)
            self.wake()

    def _prepare_and_start(self, run_id: str) -> None:
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            job = session.get(Job, run.job_id)
            ws = session.get(Workspace, run.workspace_id)
            assert job is not None and ws is not None
            prepared = self.preparer.prepare(ws, job, run)
        with self.db.session() as session:
            current = session.get(Run, run_id)
            if current is None or current.status != "starting":
                # cancelled while its environment was being prepared: never launch it
                self._finish_unlaunched(run_id, "cancelled before it started")
                return
            session.execute(
                runs.update_run(run_id).values(
                    entry_point=prepared.entry_point, env_hash=prepared.env_key
                )
            )
        logs.system(prepared.plan.run_dir, f"starting {prepared.plan.launcher}")
        self.executor.start(prepared.plan)
        crashpoints.reached("process_started")  # launched, not yet recorded as running
        now = self.clock.now()
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            deadline = _mark_running(session, run, now)
            if run.status == "cancelling" and run.started_at is None:
                session.execute(
                    runs.update_run(run_id).values(started_at=now, deadline_at=deadline)
                )
        log.info("run started", extra={"action": "start_run", "run_id": run_id})

    def _fail_start(self, run_id: str, reason: str) -> None:
        logs.system(self.preparer.run_dir(run_id), f"run failed before start: {reason}")
        self._end(run_id, ["starting", "cancelling"], "failed", reason=reason)

    def _finish_unlaunched(self, run_id: str, reason: str) -> None:
        self._end(run_id, ["starting", "cancelling"], "cancelled", reason=reason)

    def _end(self, run_id: str, expected: list[str], status: str, **values: Any) -> bool:
        """End a run through the dispatcher (interval ledger, refresh, follow-ups) in one
        transaction; False when it had already ended."""
        with self.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.status not in expected:
                return False
            follow_ups = self.dispatcher.finish(
                session, run, expected, status, self.clock.now(), **values
            )
        if follow_ups:
            crashpoints.reached("follow_up_created")  # committed with the upstream's end
        self._notify(run_id)
        if follow_ups:
            self.wake()
        return True

    # stop and finish --------------------------------------------------------------------
    def _enforce(self, run: Run, now: datetime) -> None:
        """Timeout and cancel: SIGTERM to the process group, SIGKILL once the grace is over."""
        run_dir = self.preparer.run_dir(run.id)
        if run.stop_requested_at is None:
            reason = None
            if run.status == "cancelling":
                reason = run.stop_reason or "cancel"  # "idle": an app nobody used
            elif run.deadline_at is not None and now >= run.deadline_at:
                reason = "timeout"
            if reason is None:
                return
            logs.system(
                run_dir, f"stopping ({reason}): SIGTERM, SIGKILL after {run.grace_s:g}s grace"
            )
            self.executor.signal(run_dir, signal.SIGTERM)
            with self.db.session() as session:
                session.execute(
                    runs.update_run(run.id).values(stop_requested_at=now, stop_reason=reason)
                )
        elif now >= run.stop_requested_at + timedelta(seconds=run.grace_s) and self.executor.signal(
            run_dir, signal.SIGKILL
        ):
            logs.system(run_dir, "grace period over: SIGKILL")

    def _finish(self, run: Run, exit_status: ExitStatus, now: datetime) -> None:
        crashpoints.reached("run_finished")  # the process ended, nothing recorded yet
        status, reason = outcome(run.stop_reason, exit_status, run.timeout_s)
        run_dir = self.preparer.run_dir(run.id)
        logs.system(run_dir, f"run {status}" + (f": {reason}" if reason else ""))
        moved = self._end(
            run.id,
            list(LAUNCHED),
            status,
            reason=reason,
            exit_code=exit_status.returncode,
            signal=exit_status.signal,
        )
        if moved:
            self.preparer.cleanup(run.id)
            log.info(
                "run finished", extra={"action": "finish_run", "run_id": run.id, "status": status}
            )

    def _notify(self, run_id: str) -> None:
        if self.on_finished is not None:
            self.on_finished(run_id)


def _deadline(session: Any, run: Run, now: datetime) -> datetime | None:
    """When the run's timeout stops it. Apps (interactive jobs) have none: their timeout is
    an idle window, enforced by the app monitor (`controller/apps.py`)."""
    job = session.get(Job, run.job_id)
    if job is not None and job.job_type == "interactive":
        return None
    return now + timedelta(seconds=run.timeout_s)


def _mark_running(session: Any, run: Run, now: datetime, **values: Any) -> datetime | None:
    """starting -> running, with its start time and the deadline its timeout gives."""
    deadline = _deadline(session, run, now)
    runs.move(
        session,
        run.id,
        ["starting"],
        status="running",
        started_at=now,
        deadline_at=deadline,
        **values,
    )
    return deadline


def outcome(
    stop_reason: str | None, exit_status: ExitStatus, idle_s: float = 0.0
) -> tuple[str, str | None]:
    """Final status and reason from why we stopped it (if we did) and how it exited."""
    if stop_reason == "cancel":
        return "cancelled", "cancelled by request"
    if stop_reason == "idle":
        return "cancelled", f"stopped after {duration(idle_s)} idle"
    if stop_reason == "timeout":
        return "failed", "timeout"
    if exit_status.error:
        return "failed", exit_status.error
    if exit_status.returncode == 0:
        return "completed", None
    if exit_status.signal is not None:
        return "failed", f"killed by signal {signal.Signals(exit_status.signal).name}"
    return "failed", f"exit code {exit_status.returncode}"


def duration(seconds: float) -> str:
    """`300` → "5 min", `90` → "90 s", `7200` → "2 h" (for reasons a person reads)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
