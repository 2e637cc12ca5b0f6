"""The runner loop: claims pending runs, starts them, watches them end, enforces deadlines.

One thread ticks (woken at once by the lifecycle's events: a run created or requeued, a stop
requested, a run ended; else every half second); run preparation (environment builds can take
a while) happens on a small worker pool, outside any transaction. Every status change goes
through `lifecycle` (the table of legal moves, guarded UPDATEs), and the executor keeps its
state in files, so after a restart running processes are adopted, and a run is never launched
twice.

Several controllers may share one database: each is a node (`controller/nodes.py`) and this
runner claims runs as its node and touches only the runs it holds; its writes for a run are
guarded by the claim (holder and claim epoch), so once a run is given up on (its holder was
lost) nothing here can finish or restart it.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller import (
    envs,
    logs,
    placement,
    prewarm,
    run_end,
    runlinks,
    runs,
    slots,
)
from dockyard.controller.executors.base import Executor, ExitStatus
from dockyard.controller.lifecycle import (
    ACTIVE,
    LAUNCHED,
    Claim,
    Deployed,
    Lifecycle,
    RunCreated,
    RunEnded,
    RunRequeued,
    RunStatus,
    StopRequested,
)
from dockyard.controller.lifecycle.decisions import SERVER_STOPPED
from dockyard.controller.loop import Loop, is_outage
from dockyard.controller.prepare import Preparer, launch_args
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)
TICK_S = 0.5
CLAIM_LIMIT = 64  # pending runs claimed per tick at most (more: the next ticks)
KILL_WAIT_S = 10.0  # after SIGKILL, how long a stopping server waits for an app's exit record
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
        run_slots: int | None = None,
        slot_weights: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.executor = executor
        self.preparer = preparer
        self.lifecycle = lifecycle
        self.pending_bound, self.starting_bound = bounds
        # batch runs this node runs at once (controller/slots.py); apps take none
        self.slots = run_slots or slots.default_slots()
        self.slot_weights = dict(slot_weights or {})
        self._in_use, self._free = 0, self.slots  # as the last claim counted them
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
        self._preparing: set[str] = set()
        self._futures: set[Future[None]] = set()
        self._launches: dict[str, Future[None]] = {}  # run id → its preparation and start
        self._claims: dict[str, Claim] = {}  # run id → this runner's claim, while it starts
        self._watched: set[str] = set()  # the runs the last tick watched
        # left the watch since (ended here, or by another controller: then maybe still
        # running) → whether SIGKILL went out
        self._given_up: dict[str, bool] = {}
        # runs whose preparation the database's absence cut short → their claim: back to
        # `pending` once it is back (never failed for an outage)
        self._cut_short: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self.node = lifecycle.node  # the holder of the runs this runner claims
        # the node's membership says so: another process took this node's name
        self.fenced: Callable[[], bool] = lambda: False
        # whether another controller is alive (a stopping one leaves pending apps to it)
        self.others_alive: Callable[[], bool] = lambda: False
        # whether this server runs batch runs too (`DOCKYARD_EMBEDDED_RUNS`); off: workers
        # take every batch run, interactive ones still run here
        self.batch_runs = True
        executor.on_exit(self.wake)
        events = lifecycle.events
        events.subscribe(RunCreated, self._created)
        events.subscribe(RunRequeued, lambda _event: self.wake())
        events.subscribe(StopRequested, lambda _event: self.wake())
        events.subscribe(RunEnded, self._ended)
        events.subscribe(Deployed, lambda event: self.prebuild(event.workspace))

    def _created(self, event: RunCreated) -> None:
        """A new run may be this runner's to claim (a batch run only with embedded runs on:
        a burst of worker runs does not wake it once per run)."""
        if self.batch_runs or not event.batch:
            self.wake()

    def _ended(self, event: RunEnded) -> None:
        if self.batch_runs or event.holder in (None, self.node):
            self.wake()

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        super().start()

    def start_loop(self) -> None:
        """Start ticking without `recover` (the caller recovered, with what it knows)."""
        super().start()

    def on_stop(self) -> None:
        """The loop has ended: apps stop with the server, then the preparations queued are
        dropped (the runs stay `pending`/`starting`; a restart starts them again)."""
        try:
            self.stop_apps()
        except Exception:  # the server stops anyway; a restart ends what is left
            log.exception("stopping apps failed", extra={"action": "stop_apps"})
        self._pool.shutdown(wait=False, cancel_futures=True)

    def step(self) -> float:
        self.tick()
        return TICK_S

    def recover(self, given_up_since: datetime | None = None) -> None:
        """After a restart: this node adopts the runs it held (claimed anew, and those nobody
        holds); runs whose preparation was cut short go back to `pending` (their process was
        never started); runs that were launched but not yet recorded as running are recorded
        now and watched like any other. `given_up_since`: this node's last heartbeat before
        the restart; runs of its ended since (given up on as lost) whose processes still
        run are killed."""
        now = self.clock.now()
        if given_up_since is not None:
            self._kill_given_up(given_up_since)
        with self.db.session() as session:
            adopted = self.lifecycle.adopt(session, self.node)
            starting = session.scalars(
                select(Run).where(Run.status == S.STARTING, Run.id.in_(list(adopted)))
            )
            for run in starting:
                claim = adopted[run.id]
                run_dir = self.preparer.run_dir(run.id)
                if not self.executor.launched(run_dir):
                    self.lifecycle.requeue(session, run.id, claim)
                    continue
                if self.executor.held_unreleased(run_dir):
                    # prepared ahead of its tick, never released: start it the ordinary way
                    prewarm.requeue_unreleased(self.executor, run_dir)
                    self.lifecycle.requeue(session, run.id, claim)
                    continue
                self.lifecycle.mark_running(session, run, now, claim)

    def _kill_given_up(self, since: datetime) -> None:
        """Processes of runs this node held that another controller ended while this one was
        gone (its runs are never run twice, nor left running unwatched)."""
        with self.db.session() as session:
            ids = list(
                session.scalars(
                    select(Run.id).where(
                        Run.holder == self.node,
                        Run.status == S.FAILED,
                        Run.finished_at >= since,
                    )
                )
            )
        for run_id in ids:
            run_dir = self.preparer.run_dir(run_id)
            alive = self.executor.launched(run_dir) and self.executor.poll(run_dir) is None
            if alive and self.executor.signal(run_dir, signal.SIGKILL):
                logs.system(
                    run_dir, "this run was given up on while its controller was gone: SIGKILL"
                )

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
        self.release_held(run_id, warm.run_dir, "released the prepared process at its tick")

    def release_held(
        self, run_id: str, run_dir: Path, note: str = "released a warm pool's held process"
    ) -> None:
        """Hand a held process (prepared ahead of its tick, or a warm pool's) its launch
        arguments, computed from the run's row, and a follow-up its upstream fields (known
        only now: the process's environment was fixed when it was spawned), then record it
        running; a process that is gone: the run starts the ordinary way."""
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            job = session.get(Job, run.job_id)
            ws = session.get(Workspace, run.workspace_id)
            assert job is not None and ws is not None and run.deployment_version is not None
            upstream = runlinks.upstream_of(session, run, ws.name)
            requirements = self.preparer.requirements(ws, run.deployment_version)
            entry_point = self.preparer.entry_point(job, run, requirements, upstream)
            payload: dict[str, Any] = {"args": launch_args(run, entry_point)}
            if upstream is not None:
                payload["env"] = upstream.environment(self.preparer.settings.base_url)
            try:  # its secrets only now: it held none while it waited
                if self.preparer.deliver_secrets(ws, run_dir, run.configuration_version):
                    payload["config"] = True  # the shim reloads dlt's configuration
                released = self.executor.release(run_dir, payload)
            except (DockyardError, OSError) as exc:  # started cold, it fails with the reason
                log.warning(
                    "held process not given its secrets: starting the run cold",
                    extra={"action": "warm_release", "run_id": run_id, "error": str(exc)},
                )
                self.executor.release(run_dir, {"discard": True})
                released = False
            if released:
                logs.system(run_dir, note)
                crashpoints.reached("process_started")  # released, not yet recorded
            now = self.clock.now()
            claim = Claim(run.holder or self.node, run.claim_epoch)
            if released:
                # the environment it runs in, as a cold start records it (`run.environment`)
                env = envs.env_spec(requirements, job.definition).key
                self.lifecycle.mark_running(
                    session, run, now, claim, entry_point=entry_point, env_hash=env
                )
            else:  # the prepared process is gone: start the run the ordinary way
                prewarm.requeue_unreleased(self.executor, run_dir)
                self.lifecycle.requeue(session, run_id, claim)
        self.wake()

    # one tick ---------------------------------------------------------------------------
    def tick(self) -> None:
        if self.fenced():
            return  # another process holds this node's name now: hold nothing more
        now = self.clock.now()
        self._requeue_cut_short()
        self._bound(now)
        self._claim(now)
        self._watch()

    def _requeue_cut_short(self) -> None:
        """Runs whose preparation failed for a database outage start again the ordinary way
        (one whose process did start is watched like any other)."""
        with self._lock:
            cut = dict(self._cut_short)
        for run_id, claim in cut.items():
            if not self.executor.launched(self.preparer.run_dir(run_id)):
                with self.db.session() as session:
                    self.lifecycle.requeue(session, run_id, claim)
            with self._lock:
                self._cut_short.pop(run_id, None)

    def _bound(self, now: datetime) -> None:
        """No run waits forever: stuck in `pending` (anyone's to end) or `starting` (this
        node's) past its bound, it fails. A batch run this node could take is not stuck while
        every slot is in use: it waits its turn in the queue."""
        pending_before = now - timedelta(seconds=self.pending_bound)
        starting_before = now - timedelta(seconds=self.starting_bound)
        queued = self.waiting_for_slots()
        with self.db.session() as session:
            stuck = list(
                session.execute(
                    select(Run.id, Run.status, Run.pool, Run.labels, Job.job_type)
                    .join(Job, Job.id == Run.job_id)
                    .where(
                        ((Run.status == S.PENDING) & (Run.created_at < pending_before))
                        | (
                            (Run.status == S.STARTING)
                            & (Run.holder == self.node)
                            & (Run.claimed_at < starting_before)
                        )
                    )
                )
            )
        for run_id, status, pool, labels, job_type in stuck:
            slot_bound = job_type == "batch" and pool == placement.DEFAULT_POOL and not labels
            if queued and status == S.PENDING and slot_bound:
                continue  # waiting for one of this node's slots
            bound = self.pending_bound if status == S.PENDING else self.starting_bound
            if status == S.STARTING and self.executor.launched(self.preparer.run_dir(run_id)):
                continue  # its process exists: watched like a running run
            reason = f"stuck in {status} for more than {bound:g}s"
            if self._end(run_id, [S(status)], S.FAILED, lost=True, reason=reason):
                logs.system(self.preparer.run_dir(run_id), f"run failed: {reason}")

    def _claim(self, now: datetime) -> None:
        """Claim the pending runs this node may start now: every app (apps take no slot),
        and batch runs in the slots left (`controller/slots.py`: fair order, weights)."""
        with self.db.session() as session:
            # rows another server is claiming right now are skipped, not waited for (PostgreSQL;
            # nothing on SQLite); the guarded update in `claim` keeps a claim once either way
            # only runs of the default pool without labels: those placed elsewhere are
            # workers' (controller/placement.py)
            apps = self._lock_pending(
                session,
                select(Run.id, Run.labels)
                .join(Job, Job.id == Run.job_id)
                .where(
                    Run.status == S.PENDING,
                    Run.pool == placement.DEFAULT_POOL,
                    Job.job_type == "interactive",
                )
                .order_by(Run.created_at)
                .limit(CLAIM_LIMIT),
            )
            batch = self._batch_to_start(session) if self.batch_runs else []
            claims = {
                rid: self.lifecycle.claim(session, rid, now, self.node) for rid in apps + batch
            }
        claimed = [rid for rid, claim in claims.items() if claim is not None]
        for run_id in claimed:
            with self._lock:
                self._preparing.add(run_id)
                self._claims[run_id] = claims[run_id]  # type: ignore[assignment]
            future = self._submit(self._launch, run_id)
            with self._lock:
                self._launches[run_id] = future

    def _lock_pending(self, session: Session, query: Select[tuple[str, Any]]) -> list[str]:
        rows = session.execute(query.with_for_update(skip_locked=True, of=Run)).all()
        return [rid for rid, labels in rows if not labels]

    def _batch_to_start(self, session: Session) -> list[str]:
        """The waiting batch runs that fit in this node's free slots, in the fair order."""
        in_use = self._slots_in_use(session)
        self._count_slots(in_use)
        free = min(self.slots - in_use, CLAIM_LIMIT)  # one tick's claims: a short transaction
        if free <= 0:
            return []
        key = func.coalesce(Run.scheduled_for, Run.created_at)
        turn = (
            func.row_number()
            .over(partition_by=Run.workspace_id, order_by=(key, Run.created_at, Run.id))
            .label("turn")
        )
        ranked = (
            select(Run.id, Run.workspace_id, Run.labels, Job.definition, key.label("at"), turn)
            .join(Job, Job.id == Run.job_id)
            .where(
                Run.status == S.PENDING,
                Run.pool == placement.DEFAULT_POOL,
                Job.job_type == "batch",
            )
            .subquery()
        )
        # each workspace's first run, then each one's second, …: round robin, oldest first;
        # a few more rows than slots, for the labelled ones left to workers
        rows = session.execute(
            select(ranked.c.id, ranked.c.workspace_id, ranked.c.labels, ranked.c.definition)
            .where(ranked.c.turn <= free)
            .order_by(ranked.c.turn, ranked.c.at, ranked.c.id)
            .limit(free + CLAIM_LIMIT)
        ).all()
        waiting = [
            slots.Waiting(rid, ws, slots.weight(definition, self.slot_weights, self.slots))
            for rid, ws, labels, definition in rows
            if not labels
        ]
        chosen = slots.pick(waiting, free)
        if not chosen:
            return []
        locked = self._lock_pending(
            session, select(Run.id, Run.labels).where(Run.id.in_(chosen), Run.status == S.PENDING)
        )
        weights = {w.run_id: w.weight for w in waiting}
        self._count_slots(in_use + sum(weights[rid] for rid in locked))
        return locked

    def _count_slots(self, in_use: int) -> None:
        with self._lock:
            self._in_use, self._free = in_use, max(0, self.slots - in_use)

    def _slots_in_use(self, session: Session) -> int:
        """What this node's batch runs take now (starting, running or stopping)."""
        active = (
            select(Job.definition)
            .join(Run, Run.job_id == Job.id)
            .where(Run.holder == self.node, Run.status.in_(LAUNCHED), Job.job_type == "batch")
        )
        if not self.slot_weights:
            count = session.execute(select(func.count()).select_from(active.subquery()))
            return int(count.scalar_one())
        return sum(
            slots.weight(definition, self.slot_weights, self.slots)
            for definition in session.scalars(active)
        )

    def take_slot(self) -> bool:
        """Take one free slot for a run that starts outside the claim (a prepared timed run
        at its tick): False when every slot is in use (the run then waits in the queue)."""
        with self._lock:
            if self._free <= 0:
                return False
            self._free -= 1
            self._in_use += 1
            return True

    def waiting_for_slots(self) -> bool:
        """Whether this node's slots were all in use at its last claim."""
        with self._lock:
            return self.batch_runs and self._free <= 0

    def _submit(self, work: Any, arg: str) -> "Future[None]":
        future = self._pool.submit(work, arg)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget_future)
        return future

    def _forget_future(self, future: "Future[None]") -> None:
        with self._lock:
            self._futures.discard(future)
            for run_id in [r for r, f in self._launches.items() if f is future]:
                del self._launches[run_id]
                self._claims.pop(run_id, None)

    def settle(self, timeout_s: float = 30.0) -> None:
        """Wait for the preparations (and prebuilds) in flight: for tests driving `tick`."""
        with self._lock:
            pending = set(self._futures)
        wait(pending, timeout=timeout_s)

    def _watch(self) -> None:
        with self.db.session() as session:
            active = list(
                session.scalars(
                    select(Run).where(Run.status.in_(LAUNCHED), Run.holder == self.node)
                )
            )
        self._reap({run.id for run in active})
        for run in active:
            with self._lock:
                if run.id in self._preparing or run.id in self._cut_short:
                    continue
            run_dir = self.preparer.run_dir(run.id)
            status = self.executor.poll(run_dir)
            # each end is stamped when it is seen: a tick that ends hundreds of runs can
            # last seconds, and its start is no run's end (nor a deadline's reference)
            if status is not None:
                self._finish(run, status, self.clock.now())
            else:
                self._enforce(run, self.clock.now())

    def _reap(self, watched: set[str]) -> None:
        """Runs that left this node's watch since the last tick: those another controller
        ended (this node was taken for lost) may still have a process, which must not run on
        unwatched: SIGKILL; once it is gone, its configuration copy is removed. (Runs this
        runner ended pass through once, their process already gone.)"""
        for run_id in self._watched - watched:
            self._given_up.setdefault(run_id, False)
        self._watched = watched
        for run_id, killed in list(self._given_up.items()):
            run_dir = self.preparer.run_dir(run_id)
            if self.executor.launched(run_dir) and self.executor.poll(run_dir) is None:
                if not killed and self.executor.signal(run_dir, signal.SIGKILL):
                    logs.system(run_dir, "this run was given up on (its holder was lost): SIGKILL")
                self._given_up[run_id] = True
                continue
            self.preparer.cleanup(run_id)
            del self._given_up[run_id]

    # start ------------------------------------------------------------------------------
    def _launch(self, run_id: str) -> None:
        try:
            self._prepare_and_start(run_id)
        except DockyardError as exc:
            self._fail_start(run_id, exc.message)
        except Exception as exc:  # a run must end with a reason, whatever went wrong
            if is_outage(exc):  # not the run's fault: it starts again once the database is back
                self._postpone(run_id, exc)
                return
            log.exception("run start failed", extra={"action": "start_run", "run_id": run_id})
            self._fail_start(run_id, f"could not start: {exc!r}")
        finally:
            with self._lock:
                self._preparing.discard(run_id)
            self.wake()

    def _postpone(self, run_id: str, exc: Exception) -> None:
        claim = self._claim_of(run_id)
        if claim is not None:
            with self._lock:
                self._cut_short[run_id] = claim
        log.warning(
            "run start cut short by a database outage; it starts again once it is back",
            extra={"action": "start_run", "run_id": run_id, "error": type(exc).__name__},
        )

    def _claim_of(self, run_id: str) -> Claim | None:
        with self._lock:
            return self._claims.get(run_id)

    def _prepare_and_start(self, run_id: str) -> None:
        claim = self._claim_of(run_id)
        with self.db.session() as session:  # a short read: nothing slow holds a transaction
            run = session.get(Run, run_id)
            assert run is not None
            job = session.get(Job, run.job_id)
            ws = session.get(Workspace, run.workspace_id)
            assert job is not None and ws is not None
            upstream = runlinks.upstream_of(session, run, ws.name)  # a follow-up's cause
        # env build, checkout, configuration
        prepared = self.preparer.prepare(ws, job, run, upstream)
        with self.db.session() as session:
            current = session.get(Run, run_id)
            if current is not None and claim is not None and not _holds(current, claim):
                return  # given up on while it was prepared (this node was lost): leave it
            if current is None or current.status != S.STARTING:
                # cancelled while its environment was being prepared: never launch it
                stopped = current is not None and current.stop_reason == "shutdown"
                self._finish_unlaunched(
                    run_id, SERVER_STOPPED if stopped else "cancelled before it started"
                )
                return
            session.execute(
                runs.update_run(run_id).values(
                    entry_point=prepared.entry_point, env_hash=prepared.env_key
                )
            )
        note = self.lifecycle.placement_note(job)
        if note:
            logs.system(prepared.plan.run_dir, note)
        logs.system(prepared.plan.run_dir, f"starting {prepared.plan.launcher}")
        self.executor.start(prepared.plan)
        crashpoints.reached("process_started")  # launched, not yet recorded as running
        now = self.clock.now()
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            recorded = self.lifecycle.mark_running(session, run, now, claim)
        if not recorded and claim is not None:
            # given up on meanwhile: its process must not run unwatched
            self.executor.signal(prepared.plan.run_dir, signal.SIGKILL)
            logs.system(prepared.plan.run_dir, "this run was given up on as it started: SIGKILL")
            return
        log.info("run started", extra={"action": "start_run", "run_id": run_id})

    def _fail_start(self, run_id: str, reason: str) -> None:
        logs.system(self.preparer.run_dir(run_id), f"run failed before start: {reason}")
        claim = self._claim_of(run_id)
        self._end(run_id, [S.STARTING, S.CANCELLING], S.FAILED, claim=claim, reason=reason)

    def _finish_unlaunched(self, run_id: str, reason: str) -> None:
        claim = self._claim_of(run_id)
        self._end(run_id, [S.CANCELLING], S.CANCELLED, claim=claim, reason=reason)

    def _end(
        self,
        run_id: str,
        expected: list[RunStatus],
        status: RunStatus,
        lost: bool = False,
        claim: Claim | None = None,
        **values: Any,
    ) -> bool:
        """`run_end.end` now (False when it had already ended, or is no longer held at
        `claim`)."""
        now = self.clock.now()
        return run_end.end(
            self.db, self.lifecycle, now, run_id, expected, status, lost, claim, **values
        )

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
                self.lifecycle.signalled(session, run.id, reason, now, _claim(run))
        elif now >= run.stop_requested_at + timedelta(seconds=run.grace_s) and self.executor.signal(
            run_dir, signal.SIGKILL
        ):
            logs.system(run_dir, "grace period over: SIGKILL")

    def _finish(self, run: Run, exit_status: ExitStatus, now: datetime) -> None:
        crashpoints.reached("run_finished")  # the process ended, nothing recorded yet
        run_dir = self.preparer.run_dir(run.id)
        status = run_end.finish(
            self.db, self.lifecycle, now, run, exit_status, run_dir, self._roots(run), _claim(run)
        )
        if status is not None:
            self.preparer.cleanup(run.id)
            log.info(
                "run finished", extra={"action": "finish_run", "run_id": run.id, "status": status}
            )

    def _roots(self, run: Run) -> list[str]:
        """Where the run's code ran from (a traceback names files under one of them)."""
        with self.db.session() as session:
            ws = session.get(Workspace, run.workspace_id)
            name = ws.name if ws is not None else ""
        return self.preparer.code_roots(name, run.deployment_version)

    # server shutdown --------------------------------------------------------------------
    def stop_apps(self, poll_s: float = 0.2) -> list[str]:
        """The server is stopping, so its apps stop too: they answer only through its proxy,
        and left running they would listen with nobody checking who comes in. Every active
        run of an interactive job gets SIGTERM, its grace, then SIGKILL, and ends `cancelled`
        ("server stopped"). Batch runs are left alone: a restarted server adopts them. Only
        this node's apps, and pending ones unless another controller is alive to start them.
        Called once the loop has ended (nothing else here is watching runs); returns the runs
        stopped."""
        now = self.clock.now()
        mine = Run.holder == self.node
        if not self.others_alive():
            mine = mine | (Run.status == S.PENDING)
        with self.db.session() as session:
            found = list(
                session.scalars(
                    select(Run)
                    .join(Job, Job.id == Run.job_id)
                    .where(Job.job_type == "interactive", Run.status.in_(ACTIVE), mine)
                )
            )
            for run in found:
                self.lifecycle.stop_for_shutdown(session, run, now)
        signalled = [run for run in found if self._stop_app(run, now)]
        if signalled:
            grace = max(run.grace_s for run in signalled)
            log.info(
                "stopping apps with the server: SIGTERM, SIGKILL after their grace",
                extra={"action": "stop_apps", "apps": len(signalled), "grace_s": grace},
            )
        self._await_exits(signalled, poll_s)
        for run in signalled:
            with self.db.session() as session:
                current = session.get(Run, run.id)
            status = self.executor.poll(self.preparer.run_dir(run.id))
            if current is not None and status is not None:
                self._finish(current, status, self.clock.now())
        if found:
            log.info("apps stopped with the server", extra={"action": "stop_apps"})
        return [run.id for run in found]

    def _stop_app(self, run: Run, now: datetime) -> bool:
        """SIGTERM to an app's process (True), or, with none, end its run here (False)."""
        run_dir = self.preparer.run_dir(run.id)
        if run.status == S.CANCELLED:
            return False  # it was pending: ended already
        if self.executor.launched(run_dir):
            if run.stop_requested_at is None:
                logs.system(run_dir, "server stopping: SIGTERM, SIGKILL after the grace period")
                self.executor.signal(run_dir, signal.SIGTERM)
                with self.db.session() as session:
                    self.lifecycle.signalled(
                        session, run.id, run.stop_reason or "shutdown", now, _claim(run)
                    )
            return True
        with self._lock:
            future = self._launches.get(run.id)
        if future is None or future.cancel():  # not being prepared: nothing will start it
            self._end(run.id, [S.CANCELLING], S.CANCELLED, reason=SERVER_STOPPED)
        # else its preparation is under way and ends it when done (`cancelled before it
        # started`): it sees the run is no longer `starting`
        return False

    def _await_exits(self, runs_: list[Run], poll_s: float) -> None:
        """Until every process has exited: each run's grace, then SIGKILL and a little more."""
        start = time.monotonic()
        grace = max((run.grace_s for run in runs_), default=0.0)
        killed = False
        while True:
            alive = [r for r in runs_ if self.executor.poll(self.preparer.run_dir(r.id)) is None]
            waited = time.monotonic() - start
            if not alive or waited > grace + KILL_WAIT_S:
                return
            if not killed and waited > grace:
                killed = True
                for run in alive:
                    run_dir = self.preparer.run_dir(run.id)
                    if self.executor.signal(run_dir, signal.SIGKILL):
                        logs.system(run_dir, "grace period over: SIGKILL")
            time.sleep(poll_s)


def _claim(run: Run) -> Claim | None:
    """The claim a run read from the database is held at (None: nobody holds it)."""
    return None if run.holder is None else Claim(run.holder, run.claim_epoch)


def _holds(run: Run, claim: Claim) -> bool:
    return run.holder == claim.holder and run.claim_epoch == claim.epoch
