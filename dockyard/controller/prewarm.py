"""Timed runs prepared ahead of their tick, so user code starts within milliseconds of it.

A few seconds before a trigger is due, its run's process is started in held mode: the
interpreter is up, dlt and the launcher are imported, and it waits on a FIFO. At the tick the
scheduler writes the run row (with the run id chosen when the process was prepared) and
releases the process with its launch arguments, computed then (interval, trigger). A
prepared process that is not released (the tick was skipped, the job changed or was
archived) is discarded: it exits without running user code. If the controller dies, the
process reads end-of-file and exits; on restart a run row whose process was never released
goes back to `pending` and starts the ordinary way.
"""

import logging
import shutil
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from dockyard.controller import logs, runtime_config
from dockyard.controller.executors.base import Executor
from dockyard.controller.lifecycle import Lifecycle
from dockyard.controller.prepare import Preparer, RunIdentity
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Schedule, Workspace
from dockyard.errors import DockyardError
from dockyard.shim import rundir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Key:
    """What a held process was made for: a run may take it only if all of it still matches
    (the executor too: a workspace switched to Docker must not run in a held local one)."""

    job_id: int
    deployment_version: str | None
    configuration_version: str | None
    profile: str | None
    executor: str = "local"


def key_of(lifecycle: Lifecycle, ws: Workspace, job: Job) -> Key:
    """What a held process made now for a run of `job` would be made for."""
    profile = runtime_config.profile(job.definition, lifecycle.config_names(ws))
    executor = ws.executor or lifecycle.executor
    return Key(job.id, ws.deployment_version, ws.configuration_version, profile, executor)


@dataclass(frozen=True, slots=True)
class Warm:
    identity: RunIdentity
    key: Key
    trigger: str
    due_at: datetime
    run_dir: Path


class Prewarmer:
    def __init__(
        self,
        db: Database,
        preparer: Preparer,
        executor: Executor,
        lifecycle: Lifecycle,
        lead_s: float,
        most: int = 4,
    ) -> None:
        self.db = db
        self.preparer = preparer
        self.executor = executor
        self.lifecycle = lifecycle
        self.lead = timedelta(seconds=lead_s)
        self.most = most
        self._warm: dict[tuple[int, str], Warm] = {}
        self._discarded: list[Path] = []
        # takes one of the runner's slots for a released run (Runner.take_slot); none free:
        # the tick's run waits in the queue like any other
        self.take_slot: Callable[[], bool] = lambda: True
        # one index per node: controllers sharing the runs folder each recover only their own
        self._index = index_dir(preparer.settings.runs_dir, lifecycle.node)

    @property
    def enabled(self) -> bool:
        return self.lead > timedelta(0) and self.most > 0

    # before the tick ----------------------------------------------------------------------
    def prepare_due(self, now: datetime) -> None:
        """Start held processes for the triggers due within the lead time (at most `most`)."""
        self._expire(now)
        self._sweep()
        if not self.enabled or len(self._warm) >= self.most:
            return
        with self.db.session() as session:
            rows = session.execute(
                select(Schedule, Job, Workspace)
                .join(Job, Job.id == Schedule.job_id)
                .join(Workspace, Workspace.id == Job.workspace_id)
                .where(
                    Job.status == "active",
                    Job.paused_at.is_(None),
                    Job.job_type == "batch",
                    Schedule.next_fire_at > now,
                    Schedule.next_fire_at <= now + self.lead,
                )
                .order_by(Schedule.next_fire_at)
                .limit(self.most)
            ).all()
        # started outside the read: a checkout or the configuration never holds a transaction
        for schedule, job, ws in rows:
            key = (job.id, schedule.trigger)
            if key in self._warm or len(self._warm) >= self.most:
                continue
            if (ws.executor or self.lifecycle.executor) != "local":
                # starting a container takes a few hundred ms of this (the scheduler's)
                # thread; a Docker job's timed runs take the warm pool's held container
                continue
            if not self.lifecycle.place(job)[0].embedded:
                continue  # placed on workers (controller/placement.py): never run here
            assert schedule.next_fire_at is not None
            self._prepare(ws, job, schedule.trigger, schedule.next_fire_at)

    def _prepare(self, ws: Workspace, job: Job, trigger: str, due_at: datetime) -> None:
        if ws.deployment_version is None or not self.preparer.env_ready(ws, job):
            return  # never build an environment on the scheduler's clock
        key = key_of(self.lifecycle, ws, job)
        identity = RunIdentity(
            str(uuid.uuid4()), key.profile, key.deployment_version, key.configuration_version
        )
        wait_s = (self.lead * 2).total_seconds() + 60
        run_dir = start_held(self.preparer, self.executor, self._index, ws, job, identity, wait_s)
        if run_dir is not None:
            self._warm[(job.id, trigger)] = Warm(identity, key, trigger, due_at, run_dir)

    # at the tick --------------------------------------------------------------------------
    def take(self, job: Job, ws: Workspace, trigger: str) -> Warm | None:
        """The prepared process for this tick, if it still matches what the run will be."""
        warm = self._warm.pop((job.id, trigger), None)
        if warm is None:
            return None
        if warm.key != key_of(self.lifecycle, ws, job) or not self.take_slot():
            # a deploy came in between, or every slot is in use: the run starts the ordinary
            # way, when its turn comes
            self.discard(warm)
            return None
        return warm

    def discard(self, warm: Warm) -> None:
        self.executor.release(warm.run_dir, {"discard": True})
        self._discarded.append(warm.run_dir)

    def forget(self, warm: Warm) -> None:
        """The prepared process became a real run: drop it from the index."""
        (self._index / warm.identity.run_id).unlink(missing_ok=True)

    def stop(self) -> None:
        for warm in list(self._warm.values()):
            self.discard(warm)
        self._warm.clear()

    # housekeeping ----------------------------------------------------------------------
    def _expire(self, now: datetime) -> None:
        """A prepared process whose tick passed without it being taken (the job was archived
        or its trigger changed meanwhile) will never be released: discard it."""
        for key, warm in list(self._warm.items()):
            if warm.due_at + self.lead < now:
                del self._warm[key]
                self.discard(warm)

    def _sweep(self) -> None:
        """Remove discarded prepared runs once their process has exited."""
        keep = []
        for run_dir in self._discarded:
            if self.executor.poll(run_dir) is None:
                keep.append(run_dir)
                continue
            (self._index / run_dir.name).unlink(missing_ok=True)
            shutil.rmtree(run_dir, ignore_errors=True)
        self._discarded = keep

    def recover(self) -> None:
        """After a restart: prepared processes that never became runs are removed."""
        if not self._index.exists() and not self._index.parent.exists():
            return
        # this node's markers, and those a version without per-node indexes left at the top
        legacy = self._index.parent.iterdir() if self._index.parent.exists() else ()
        markers = [
            *(self._index.iterdir() if self._index.exists() else ()),
            *(p for p in legacy if p.is_file()),
        ]
        with self.db.session() as session:
            for marker in markers:
                run_dir = self.preparer.run_dir(marker.name)
                if session.get(Run, marker.name) is None:
                    self.executor.signal(run_dir, signal.SIGKILL)
                    shutil.rmtree(run_dir, ignore_errors=True)
                marker.unlink(missing_ok=True)


def start_held(
    preparer: Preparer,
    executor: Executor,
    index: Path,
    ws: Workspace,
    job: Job,
    identity: RunIdentity,
    hold_s: float,
    action: str = "prewarm",
) -> Path | None:
    """Start a held process for `identity` (waiting at most `hold_s` to be released),
    marked in `index` so that a restart removes it if it never became a run; its run
    directory, or None when its preparation failed (logged as `action`)."""
    try:
        prepared = preparer.prepare_held(ws, job, identity, hold_s)
    except DockyardError as exc:
        log.warning(
            f"{action} failed",
            extra={"action": action, "job_ref": job.job_ref, "error": exc.message},
        )
        return None
    index.mkdir(parents=True, exist_ok=True)
    (index / identity.run_id).touch()
    executor.start(prepared.plan)
    return prepared.plan.run_dir


def index_dir(runs_dir: Path, node: str) -> Path:
    """Where node `node` marks the runs it prepared ahead of their tick."""
    return runs_dir / rundir.PREWARM_INDEX / node


def held_runs(runs_dir: Path) -> list[str]:
    """The runs any node has prepared and not yet released or discarded (retention keeps
    what they use)."""
    root = runs_dir / rundir.PREWARM_INDEX
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        found += [p.name for p in entry.iterdir()] if entry.is_dir() else [entry.name]
    return found


def requeue_unreleased(executor: Executor, run_dir: Path) -> None:
    """A run row whose prepared process was never released: kill it, start afresh."""
    executor.signal(run_dir, signal.SIGKILL)
    shutil.rmtree(run_dir, ignore_errors=True)
    logs.system(
        run_dir,
        "its prepared process was never released (controller restart):"
        " starting it the ordinary way",
    )
