"""Warm starts for every run: a node-local pool of held processes, one per recently used job.
On the Docker executor a held process is a started container of the job's image.

A held process (`prepare.prepare_held`, the shim's `held` mode) has its interpreter up, dlt,
the launcher and dlt's run context loaded, and waits on its run directory's `release` FIFO.
Its run id, beacon token, profile and configuration copy are fixed when it is spawned, so a
run that takes it is created with its id (`Lifecycle.create` asks `take`); once the row is
committed the runner releases it with the launch arguments computed from the row, and a
follow-up's upstream fields (`DOCKYARD_UPSTREAM_*`) go with them: they are only known then.

Correctness before speed: a held process's configuration copy has no secrets files (nor
their redaction list): they are decrypted and written when it is released, and dlt reads
its configuration again then (`Preparer.deliver_secrets`, the shim's `"config"`), so a
secret is in clear on disk only while a run of its workspace runs. A held process is given
only to a run of its job at the same deployment, configuration and profile (else discarded,
and the run starts cold), never to a run whose slot is not free, and never after it has
waited `idle_s` (discarded: the job was not used again). A deploy or configuration change
discards the workspace's stale processes at once. The pool fills off the API's and
scheduler's threads (its own loop): when a run of job J is created, J (recently used) and
the jobs that follow J (`job.success:`/`job.fail:` triggers naming it) are warmed, so a
follow-up's process is waiting when J exits. Memory is bounded by `DOCKYARD_WARM_POOL_MB`
(0: off); the least recently used job leaves first. Markers go into the prewarm index
(`prewarm.index_dir`), so a restart kills what was left.
"""

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from dockyard.clock import Clock
from dockyard.controller import logs, prewarm
from dockyard.controller.executors.base import Executor
from dockyard.controller.lifecycle import Deployed, Lifecycle, RunCreated, RunStatus
from dockyard.controller.loop import Loop
from dockyard.controller.prepare import Preparer, RunIdentity
from dockyard.controller.prewarm import Key as Key
from dockyard.controller.prewarm import key_of
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)
# a held process's resident memory, measured (bench/warm_start.py prints it): 66 MB RSS in
# the sandbox, 78 MB outside it (65 MB of it its own pages); rounded to 70
HELD_MB = 70
CONTROL_PLANE_IDLE_MB = 145  # docs/benchmarks.md: the pool's default budget is this again
TAKEN_GRACE_S = 30.0  # a taken process whose run was never committed: released or discarded
HOLD_MARGIN_S = 60.0  # the shim's own timeout is the idle expiry plus this
STOP_WAIT_S = 5.0  # a stopping server waits this long for its discarded processes to exit
# a fill waits this long after the last run was made: a new process's imports (a second or
# two of CPU) must not compete with the run that just started, nor with its follow-up's
# release when it is a short job
FILL_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class Held:
    key: Key
    workspace: str
    identity: RunIdentity
    run_dir: Path
    started_at: datetime


def default_mb(machine_mb: int) -> int:
    """The pool's memory budget when none is set: the control plane's idle footprint again
    (so server + full pool stay within twice today's idle), less on a small machine."""
    return max(0, min(CONTROL_PLANE_IDLE_MB, machine_mb // 32))


def machine_mb() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (ValueError, OSError):
        return 0


def capacity(budget_mb: int | None, per_process_mb: int = HELD_MB) -> int:
    """How many held processes the budget allows: at least one unless it is 0 (off)."""
    if budget_mb is None:
        budget_mb = default_mb(machine_mb())
    if budget_mb <= 0:
        return 0
    return max(1, budget_mb // per_process_mb)


def expired(held: Held, now: datetime, idle_s: float) -> bool:
    return now - held.started_at >= timedelta(seconds=idle_s)


def evictee(pool: dict[int, Held], used: dict[int, datetime]) -> int | None:
    """The job whose process leaves first when the pool is full: the least recently used."""
    if not pool:
        return None
    return min(pool, key=lambda job_id: (used.get(job_id, pool[job_id].started_at), job_id))


def wanted_now(wanted: list[int], limit: int) -> list[int]:
    """The jobs to warm this round: each once, at most `limit` (more would only evict each
    other), the most recently wanted, in the order they were wanted."""
    latest = list(dict.fromkeys(reversed(wanted)))[:limit]
    return [job_id for job_id in dict.fromkeys(wanted) if job_id in latest]


class WarmPool(Loop):
    name = "warmpool"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        preparer: Preparer,
        executor: Executor,
        lifecycle: Lifecycle,
        limit: int,
        idle_s: float = 600.0,
    ) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.preparer = preparer
        self.executor = executor
        self.lifecycle = lifecycle
        self.limit = limit
        self.idle_s = idle_s
        # whether a run may start now (main's runner sets it: run slots); no slot, no take
        self.slot_free: Callable[[], bool] = lambda: True
        # hands a taken process its run (the runner's `release_held`): run id, run dir
        self.release: Callable[[str, Path], None] | None = None
        self._held: dict[int, Held] = {}
        self._used: dict[int, datetime] = {}  # job → when a run of it was last made
        self._taken: dict[str, tuple[Held, datetime]] = {}  # run id → taken, not yet released
        self._discarded: list[Path] = []
        self._wanted: list[int] = []  # jobs to warm
        self._later: set[int] = set()  # jobs to warm once their environment is built
        self._created: list[str] = []  # runs made since the last step: warm their followers
        self._deployed: set[str] = set()  # workspaces whose held processes may be stale
        self._last_run = clock.now() - timedelta(seconds=FILL_DELAY_S)  # a run last made
        self._lock = threading.Lock()
        self._index = prewarm.index_dir(preparer.settings.runs_dir, lifecycle.node)
        if self.enabled:
            lifecycle.events.subscribe(RunCreated, self._on_created)
            lifecycle.events.subscribe(Deployed, self._on_deployed)
            lifecycle.take_warm = self.take

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def held(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    # events (any thread: cheap, never raise) ---------------------------------------------
    def _on_created(self, event: RunCreated) -> None:
        self._last_run = self.clock.now()
        if event.warm:
            self._release(event.run_id)
        if event.batch and event.status in (RunStatus.PENDING, RunStatus.STARTING):
            with self._lock:
                self._created.append(event.run_id)
            self.wake()

    def _on_deployed(self, event: Deployed) -> None:
        with self._lock:
            self._deployed.add(event.workspace)
        self.wake()

    # take (inside run creation's transaction) ----------------------------------------------
    def take(self, ws: Workspace, job: Job) -> str | None:
        """The run id of a held process the new run of `job` may be, or None (start cold)."""
        if job.job_type != "batch":
            return None
        with self._lock:
            held = self._held.pop(job.id, None)
            self._used[job.id] = self.clock.now()
            self._wanted.append(job.id)  # refill: the job is in use
        self.wake()
        if held is None:
            return None
        if held.key != self._key(ws, job):
            self._discard(held, "it no longer matches the job's deployment or configuration")
            return None
        if not self._usable(held):
            self._discard(held, "idle expiry, or its process is gone")
            return None
        if not self.slot_free():  # every run slot is in use: the run queues, the process waits
            with self._lock:
                self._held.setdefault(job.id, held)
            return None
        with self._lock:
            self._taken[held.identity.run_id] = (held, self.clock.now())
        return held.identity.run_id

    def _usable(self, held: Held) -> bool:
        alive = self.executor.poll(held.run_dir) is None
        return alive and not expired(held, self.clock.now(), self.idle_s)

    def _release(self, run_id: str) -> None:
        with self._lock:
            taken = self._taken.pop(run_id, None)
        if taken is None or self.release is None:
            return
        held = taken[0]
        (self._index / run_id).unlink(missing_ok=True)  # it is a run now
        try:
            self.release(run_id, held.run_dir)
        except Exception:  # the database went away: `_settle_taken` tries again
            log.exception("warm release failed", extra={"action": "warm_release", "run_id": run_id})
            with self._lock:
                self._taken[run_id] = taken

    def _key(self, ws: Workspace, job: Job) -> Key:
        return key_of(self.lifecycle, ws, job)

    # the loop: fill, expire, sweep -----------------------------------------------------------
    def step(self) -> float:
        with self._lock:
            # a burst of runs warms only what the pool can hold: the most recent ones
            created, self._created = self._created[-2 * self.limit :], []
            deployed, self._deployed = self._deployed, set()
        if created:
            self._want_followers(created)
        for workspace in deployed:
            self._revalidate(workspace)
        now = self.clock.now()
        quiet_in = FILL_DELAY_S - (now - self._last_run).total_seconds()
        if quiet_in > 0:
            return quiet_in  # runs are being made: fill once they have started
        with self._lock:
            # a job whose environment was not built yet is tried again while it is in use
            later, self._later = self._later, set()
            self._wanted += [j for j in later if self._recently_used(j, now)]
            wanted, self._wanted = wanted_now(self._wanted, self.limit), []
        for job_id in wanted:
            self._fill(job_id)
        self._expire(now)
        self._settle_taken(now)
        self._sweep()
        return self._next_wake(now)

    def _recently_used(self, job_id: int, now: datetime) -> bool:
        used = self._used.get(job_id)
        return used is not None and now - used < timedelta(seconds=self.idle_s)

    def _next_wake(self, now: datetime) -> float:
        with self._lock:
            if self._discarded or self._taken or self._later:
                return 1.0
            starts = [h.started_at for h in self._held.values()]
        if not starts:
            return self.idle_s
        due = min(starts) + timedelta(seconds=self.idle_s)
        return max(0.5, min(self.idle_s, (due - now).total_seconds()))

    def _want_followers(self, run_ids: list[str]) -> None:
        """The jobs of these new runs (recently used) and the jobs that follow them."""
        wanted: list[int] = []
        with self.db.session() as session:
            for run_id in run_ids:
                run = session.get(Run, run_id)
                if run is None:
                    continue
                job = session.get(Job, run.job_id)
                ws = session.get(Workspace, run.workspace_id)
                if job is None or ws is None:
                    continue
                wanted += self.lifecycle.followers_of(session, ws, job)
                wanted.append(job.id)
        now = self.clock.now()
        with self._lock:
            for job_id in wanted:
                self._used.setdefault(job_id, now)
            self._wanted = wanted + self._wanted  # followers first: they are needed soonest

    def _fill(self, job_id: int) -> None:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            ws = session.get(Workspace, job.workspace_id) if job is not None else None
            if job is None or ws is None or not self._fits(ws, job):
                return
            if not self._env_ready(ws, job):  # a build under way: tried again next round
                with self._lock:
                    self._later.add(job_id)
                return
            key = self._key(ws, job)
        with self._lock:
            current = self._held.get(job_id)
        if current is not None:
            if current.key == key and self._usable(current):
                return
            with self._lock:
                self._held.pop(job_id, None)
            self._discard(current, "its job's deployment or configuration changed")
        self._make_room()
        self._spawn(ws, job, key)

    def _fits(self, ws: Workspace, job: Job) -> bool:
        """The checks `Prewarmer.prepare_due` makes: an active, unpaused batch job run on this
        node (by either executor: a held process or a held container)."""
        if job.status != "active" or job.job_type != "batch" or ws.deployment_version is None:
            return False
        return self.lifecycle.place(job)[0].embedded

    def _env_ready(self, ws: Workspace, job: Job) -> bool:
        """Its environment (virtualenv or image) is built: the pool never builds one."""
        try:
            return self.preparer.env_ready(ws, job)
        except DockyardError:
            return False

    def _make_room(self) -> None:
        with self._lock:
            victim = None
            if len(self._held) >= self.limit:
                job_id = evictee(self._held, self._used)
                victim = self._held.pop(job_id) if job_id is not None else None
        if victim is not None:
            self._discard(victim, "the warm pool is full: a more recently used job needs room")

    def _spawn(self, ws: Workspace, job: Job, key: Key) -> None:
        identity = RunIdentity(
            str(uuid.uuid4()), key.profile, key.deployment_version, key.configuration_version
        )
        hold_s = self.idle_s + HOLD_MARGIN_S
        run_dir = prewarm.start_held(
            self.preparer, self.executor, self._index, ws, job, identity, hold_s, "warm_fill"
        )
        if run_dir is None:
            return
        held = Held(key, ws.name, identity, run_dir, self.clock.now())
        with self._lock:
            self._held[job.id] = held
        log.info(
            "warm pool filled",
            extra={"action": "warm_fill", "job_ref": job.job_ref, "run_id": identity.run_id},
        )

    def _revalidate(self, workspace: str) -> None:
        """After a deploy or configuration change: its stale processes go at once."""
        with self.db.session() as session:
            ws = session.scalar(select(Workspace).where(Workspace.name == workspace))
            stale = []
            for held in self.held():
                if held.workspace != workspace:
                    continue
                job = session.get(Job, held.key.job_id)
                if ws is None or job is None or self._key(ws, job) != held.key:
                    stale.append(held)
        for held in stale:
            with self._lock:
                if self._held.get(held.key.job_id) is not held:
                    continue
                del self._held[held.key.job_id]
                self._wanted.append(held.key.job_id)  # refilled at the new version
            self._discard(held, "a deploy or configuration change made it stale")

    def _expire(self, now: datetime) -> None:
        """Idle too long (the job was not used again): discarded. Its process gone before
        (killed, or past its own hold timeout): replaced if its job was used within the idle
        window."""
        for held in self.held():
            gone = self.executor.poll(held.run_dir) is not None
            if not gone and not expired(held, now, self.idle_s):
                continue
            with self._lock:
                if self._held.get(held.key.job_id) is not held:
                    continue
                del self._held[held.key.job_id]
                if gone and self._recently_used(held.key.job_id, now):
                    self._wanted.append(held.key.job_id)
            self._discard(held, "its process is gone" if gone else "idle expiry")

    def _settle_taken(self, now: datetime) -> None:
        """A taken process whose run creation never got to its release (rolled back, or an
        event lost): its run exists and waits → release it; else discard it."""
        with self._lock:
            late = [
                run_id
                for run_id, (_, at) in self._taken.items()
                if now - at >= timedelta(seconds=TAKEN_GRACE_S)
            ]
        for run_id in late:
            with self.db.session() as session:
                run = session.get(Run, run_id)
                waiting = run is not None and run.status == RunStatus.STARTING
            if waiting:
                self._release(run_id)
                continue
            with self._lock:
                taken = self._taken.pop(run_id, None)
            if taken is not None:
                self._discard(taken[0], "its run was never made")

    def _discard(self, held: Held, why: str) -> None:
        self.executor.release(held.run_dir, {"discard": True})
        logs.system(held.run_dir, f"warm pool: discarded ({why})")
        with self._lock:
            self._discarded.append(held.run_dir)

    def _sweep(self) -> None:
        """Remove discarded processes' run folders once they have exited."""
        with self._lock:
            discarded, self._discarded = self._discarded, []
        keep = []
        for run_dir in discarded:
            if self.executor.poll(run_dir) is None:
                keep.append(run_dir)
                continue
            (self._index / run_dir.name).unlink(missing_ok=True)
            shutil.rmtree(run_dir, ignore_errors=True)
        with self._lock:
            self._discarded += keep

    def on_stop(self) -> None:
        """The server stops: every held process is discarded (a held process never outlives
        its controller; taken ones are runs, released or requeued by a restart)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for h in held:
            self._discard(h, "server stopped")
        # a held process exits at once when discarded: wait a moment, so that their folders
        # (and a Docker executor's containers) go now rather than at the next start
        deadline = time.monotonic() + STOP_WAIT_S
        while self._discarded and time.monotonic() < deadline:
            self._sweep()
            if self._discarded:
                time.sleep(0.1)
