"""The runner loop: claims pending runs, starts them, watches them end, enforces deadlines.

One thread ticks (woken at once by the lifecycle's events: a run created or requeued, a stop
requested, a run ended; else every half second); run preparation (environment builds can take
a while) happens on a small worker pool, outside any transaction. Every status change goes
through `lifecycle` (the table of legal moves, guarded UPDATEs), and the executor keeps its
state in files, so after a restart running processes are adopted, and a run is never launched
twice.
"""

import logging
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller import logs, prewarm, runs
from dockyard.controller.executors.base import Executor, ExitStatus
from dockyard.controller.lifecycle import (
    LAUNCHED,
    Deployed,
    Lifecycle,
    RunCreated,
    RunEnded,
    RunRequeued,
    RunStatus,
    StopRequested,
    outcome,
)
from dockyard.controller.loop import Loop
from dockyard.controller.prepare import Preparer, launch_args
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)
TICK_S = 0.5
S = RunStatus


class Runner(Loop):
    name = "runner"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        executor: Executor,
        preparer: Preparer,
        lifecycle: Lifecycle,
        workers: int = 4,
        bounds: tuple[float, float] = (600.0, 1800.0),
    ) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.executor = executor
        self.preparer = preparer
        self.lifecycle = lifecycle
        self.pending_bound, self.starting_bound = bounds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
        self._preparing: set[str] = set()
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        executor.on_exit(self.wake)
        events = lifecycle.events
        events.subscribe(RunCreated, lambda _event: self.wake())
        events.subscribe(RunRequeued, lambda _event: self.wake())
        events.subscribe(StopRequested, lambda _event: self.wake())
        events.subscribe(RunEnded, lambda _event: self.wake())
        events.subscribe(Deployed, lambda event: self.prebuild(event.workspace))

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
            for run in session.scalars(select(Run).where(Run.status == S.STARTING)):
                run_dir = self.preparer.run_dir(run.id)
                if not self.executor.launched(run_dir):
                    self.lifecycle.requeue(session, run.id)
                    continue
                if self.executor.held_unreleased(run_dir):
                    # prepared ahead of its tick, never released: start it the ordinary way
                    prewarm.requeue_unreleased(self.executor, run_dir)
                    self.lifecycle.requeue(session, run.id)
                    continue
                self.lifecycle.mark_running(session, run, now)

    def prebuild(self, workspace: str) -> None:
        """Build the environments of a workspace's active batch jobs in the background after a
        deploy, so no run (and no prepared timed run) waits for a build. Interactive jobs'
        environments (the dashboard's is heavy) are built when first served."""
        self._submit(self._prebuild, workspace)

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
                self.lifecycle.mark_running(session, run, now, entry_point=entry_point)
            else:  # the prepared process is gone: start the run the ordinary way
                prewarm.requeue_unreleased(self.executor, warm.run_dir)
                self.lifecycle.requeue(session, run_id)
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
                        ((Run.status == S.PENDING) & (Run.created_at < pending_before))
                        | ((Run.status == S.STARTING) & (Run.claimed_at < starting_before))
                    )
                )
            )
        for run_id, status in stuck:
            bound = self.pending_bound if status == S.PENDING else self.starting_bound
            if status == S.STARTING and self.executor.launched(self.preparer.run_dir(run_id)):
                continue  # its process exists: watched like a running run
            reason = f"stuck in {status} for more than {bound:g}s"
            if self._end(run_id, [S(status)], S.FAILED, reason=reason):
                logs.system(self.preparer.run_dir(run_id), f"run failed: {reason}")

    def _claim(self, now: datetime) -> None:
        with self.db.session() as session:
            pending = list(
                session.scalars(
                    select(Run.id).where(Run.status == S.PENDING).order_by(Run.created_at)
                )
            )
            claimed = [rid for rid in pending if self.lifecycle.claim(session, rid, now)]
        for run_id in claimed:
            with self._lock:
                self._preparing.add(run_id)
            self._submit(self._launch, run_id)

    def _submit(self, work: Any, arg: str) -> None:
        future = self._pool.submit(work, arg)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget_future)

    def _forget_future(self, future: "Future[None]") -> None:
        with self._lock:
            self._futures.discard(future)

    def settle(self, timeout_s: float = 30.0) -> None:
        """Wait for the preparations (and prebuilds) in flight: for tests driving `tick`."""
        with self._lock:
            pending = set(self._futures)
        wait(pending, timeout=timeout_s)

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
        with self.db.session() as session:  # a short read: nothing slow holds a transaction
            run = session.get(Run, run_id)
            assert run is not None
            job = session.get(Job, run.job_id)
            ws = session.get(Workspace, run.workspace_id)
            assert job is not None and ws is not None
        prepared = self.preparer.prepare(ws, job, run)  # env build, checkout, configuration
        with self.db.session() as session:
            current = session.get(Run, run_id)
            if current is None or current.status != S.STARTING:
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
            self.lifecycle.mark_running(session, run, now)
        log.info("run started", extra={"action": "start_run", "run_id": run_id})

    def _fail_start(self, run_id: str, reason: str) -> None:
        logs.system(self.preparer.run_dir(run_id), f"run failed before start: {reason}")
        self._end(run_id, [S.STARTING, S.CANCELLING], S.FAILED, reason=reason)

    def _finish_unlaunched(self, run_id: str, reason: str) -> None:
        self._end(run_id, [S.CANCELLING], S.CANCELLED, reason=reason)

    def _end(
        self, run_id: str, expected: list[RunStatus], status: RunStatus, **values: Any
    ) -> bool:
        """End a run through the lifecycle (interval ledger, refresh, follow-ups) in one
        transaction, from the status it is in now; False when it had already ended."""
        with self.db.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.status not in expected:
                return False
            follow_ups = self.lifecycle.finish(
                session, run, [run.status], status, self.clock.now(), **values
            )
        if follow_ups:
            crashpoints.reached("follow_up_created")  # committed with the upstream's end
        return True

    # stop and finish --------------------------------------------------------------------
    def _enforce(self, run: Run, now: datetime) -> None:
        """Timeout and cancel: SIGTERM to the process group, SIGKILL once the grace is over."""
        run_dir = self.preparer.run_dir(run.id)
        if run.stop_requested_at is None:
            reason = None
            if run.status == S.CANCELLING:
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
                self.lifecycle.signalled(session, run.id, reason, now)
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
