"""Retention: what ended runs, old deployments and unused environments leave on disk goes
after a while, so a busy server's data dir does not grow without end.

Three windows, in days (settings; 0 keeps forever):

- **runs** (`retain_runs_days`, default 30): the folder of a run that ended longer ago
  (its log, its process files) is emptied; one log line stays that says the log was removed
  by retention. The run's row (status, times, result, beacon payloads) stays.
- **checkouts** (`retain_checkouts_days`, default 7): the code of a deployment that is not
  the current deployment of any workspace, not used by an active or prepared run, and that
  no run has taken for that long.
- **environments** (`retain_envs_days`, default 14): a virtualenv (local executor) that no
  job of a current deployment needs, no active or prepared run uses, and no run has taken for
  that long. The Docker executor's images have their own GC (docs/docker.md).

With several servers on one database (and one data dir), retention runs only in the server
holding its lease (`leases.RETENTION`). Removing files cannot be fenced by a transaction:
the lease is checked again before each part (runs, checkouts, environments), so a holder
paused past its expiry stops at the next part once another server has taken over.

Rows are never removed: the runs' and the audit log (`audit_event`, `controller/audit.py`)
are kept for the server's life.

What is in use is read from the database (current deployments, active runs) and from the run
folders of prepared (held) runs. A run being prepared at this very moment is not in either
yet: for it, checkouts and environments are touched when a run takes them, under the lock
that makes them, and removed only under that lock and only if untouched for the window
(`Preparer.retire_checkout`, `EnvBuilder.retire`).
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from dockyard.clock import Clock, isoformat
from dockyard.controller import envs, leases, lifecycle, logs, prewarm, retention_files
from dockyard.controller.loop import Loop
from dockyard.controller.prepare import Preparer
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import DockyardError
from dockyard.shim import rundir

log = logging.getLogger(__name__)
DAY_S = 86400.0
MARKER = ".removed-by-retention"
BATCH = 500


@dataclass(frozen=True, slots=True)
class Windows:
    """How long things are kept, in days (0: forever)."""

    runs_days: float = 30.0
    checkouts_days: float = 7.0
    envs_days: float = 14.0


@dataclass(frozen=True, slots=True)
class InUse:
    """Checkouts (`<ws>/<sha>`) and environment keys that must stay whatever their age."""

    checkouts: frozenset[str]
    envs: frozenset[str]


def removed_line(finished_at: datetime | None, days: float) -> str:
    return (
        f"the log of this run was removed by retention (the run ended {isoformat(finished_at)};"
        f" logs are kept {days:g} days, DOCKYARD_RETAIN_RUNS_DAYS)"
    )


class Retention(Loop):
    name = "retention"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        preparer: Preparer,
        env_builder: Callable[[], envs.EnvBuilder | None],
        windows: Windows,
        interval_s: float = 3600.0,
        lease: leases.Guard | None = None,
    ) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.preparer = preparer
        self.env_builder = env_builder
        self.windows = windows
        self.interval_s = interval_s
        self.lease = lease
        self._after: tuple[datetime, str] | None = None  # runs done up to here (this process)

    def step(self) -> float:
        fence = self.lease.held() if self.lease is not None else None
        if self.lease is not None and fence is None:
            return self.interval_s  # another server's work; woken if this one takes over
        more = False
        try:
            for part in (self.runs, self.checkouts, self.environments):
                if fence is not None:
                    fence.check()
                more = bool(part()) or more
        except leases.LeaseLost as exc:
            log.warning(exc.message, extra={"action": "retention"})
            return self.interval_s
        return 1.0 if more else self.interval_s

    # runs ----------------------------------------------------------------------------------
    def runs(self) -> bool:
        """Empty the folders of runs that ended before the window; True if more are due."""
        days = self.windows.runs_days
        if days <= 0:
            return False
        cutoff = self.clock.now() - timedelta(days=days)
        with self.db.session() as session:
            query = (
                select(Run.id, Run.finished_at)
                .where(Run.status.in_(lifecycle.TERMINAL), Run.finished_at < cutoff)
                .order_by(Run.finished_at, Run.id)
                .limit(BATCH)
            )
            if self._after is not None:
                query = query.where(tuple_(Run.finished_at, Run.id) > self._after)
            batch = [(run_id, at) for run_id, at in session.execute(query).all()]
        for run_id, finished_at in batch:
            self._empty_run_dir(run_id, finished_at, days)
        if batch:
            last_id, last_at = batch[-1]
            assert last_at is not None
            self._after = (last_at, last_id)
        return len(batch) == BATCH

    def _empty_run_dir(self, run_id: str, finished_at: datetime | None, days: float) -> None:
        run_dir = self.preparer.run_dir(run_id)
        if not run_dir.is_dir() or (run_dir / MARKER).exists():
            return  # never had a folder (skipped), or done already
        aside = retention_files.set_aside(run_dir)
        run_dir.mkdir(mode=0o700)
        logs.system(run_dir, removed_line(finished_at, days))
        (run_dir / MARKER).touch()
        retention_files.remove(aside)
        log.info("run folder removed", extra={"action": "retention", "run_id": run_id})

    # checkouts and environments ---------------------------------------------------------------
    def checkouts(self) -> None:
        days = self.windows.checkouts_days
        if days <= 0:
            return
        root = self.preparer.settings.checkouts_dir
        if not root.is_dir():
            return
        keep = self.in_use().checkouts
        unused_since = self.clock.now().timestamp() - days * DAY_S
        for ws_dir in _dirs(root):
            for leftover in retention_files.leftovers(ws_dir):
                retention_files.remove(leftover)
            for checkout in _dirs(ws_dir):
                if f"{ws_dir.name}/{checkout.name}" in keep:
                    continue
                aside = self.preparer.retire_checkout(checkout, unused_since)
                if aside is not None:
                    retention_files.remove(aside)
                    self._drop_bytecode(checkout)
                    log.info(
                        "checkout removed",
                        extra={"action": "retention", "checkout": str(checkout)},
                    )

    def environments(self) -> None:
        days = self.windows.envs_days
        builder = self.env_builder()
        if days <= 0 or builder is None or not builder.envs_dir.is_dir():
            return
        for leftover in retention_files.leftovers(builder.envs_dir):
            retention_files.remove(leftover)
        keep = self.in_use().envs
        unused_since = self.clock.now().timestamp() - days * DAY_S
        for env in _dirs(builder.envs_dir):
            if env.name in keep:
                continue
            aside = builder.retire(env.name, unused_since)
            if aside is not None:
                retention_files.remove(aside)
                self._drop_bytecode(env)
                log.info("environment removed", extra={"action": "retention", "env": env.name})

    def _drop_bytecode(self, removed: Path) -> None:
        """The bytecode runs wrote for a removed folder's modules: local runs write it under
        `<data-dir>/pycache/<workspace>`, mirroring the folder's absolute path
        (PYTHONPYCACHEPREFIX)."""
        cache = self.preparer.settings.data_dir / "pycache"
        relative = removed.absolute().relative_to(removed.anchor)
        for workspace in cache.iterdir() if cache.is_dir() else ():  # one folder per workspace
            retention_files.remove(workspace / relative)

    # what is in use ----------------------------------------------------------------------------
    def in_use(self) -> InUse:
        """Current deployments, active runs and prepared (held) runs: their checkouts and
        environments."""
        checkouts: set[str] = set()
        env_keys: set[str] = set()
        with self.db.session() as session:
            for ws in session.scalars(select(Workspace)):
                if ws.deployment_version:
                    checkouts.add(f"{ws.name}/{ws.deployment_version}")
                    env_keys |= self._deployment_envs(session, ws)
            active = session.execute(
                select(Run, Workspace.name)
                .join(Workspace, Workspace.id == Run.workspace_id)
                .where(Run.status.in_(lifecycle.ACTIVE))
            ).all()
            for run, ws_name in active:
                if run.deployment_version:
                    checkouts.add(f"{ws_name}/{run.deployment_version}")
                if run.env_hash:
                    env_keys.add(run.env_hash)
                self._from_run_dir(run.id, checkouts, env_keys)
        for held in self._held_runs():
            self._from_run_dir(held, checkouts, env_keys)
        return InUse(frozenset(checkouts), frozenset(env_keys))

    def _deployment_envs(self, session: Session, ws: Workspace) -> set[str]:
        assert ws.deployment_version is not None
        try:
            requirements = self.preparer.requirements(ws, ws.deployment_version)
        except (DockyardError, OSError, ValueError, KeyError):
            return set()
        jobs = session.scalars(select(Job).where(Job.workspace_id == ws.id, Job.status == "active"))
        keys = set()
        for job in jobs:
            try:
                keys.add(envs.env_spec(requirements, job.definition).key)
            except (DockyardError, KeyError, ValueError):
                continue  # a job that cannot run has no environment to keep
        return keys

    def _held_runs(self) -> Iterable[str]:
        return prewarm.held_runs(self.preparer.settings.runs_dir)

    def _from_run_dir(self, run_id: str, checkouts: set[str], env_keys: set[str]) -> None:
        """What a started local run's `spec.json` says it uses (its cwd and virtualenv)."""
        spec = rundir.read_spec(self.preparer.run_dir(run_id))
        if spec is None:
            return
        root = self.preparer.settings.checkouts_dir
        cwd = Path(str(spec.get("cwd") or ""))
        if cwd.is_relative_to(root) and len(cwd.relative_to(root).parts) == 2:
            checkouts.add(str(cwd.relative_to(root)))
        venv = (spec.get("env") or {}).get("VIRTUAL_ENV")
        if venv:
            env_keys.add(Path(str(venv)).name)


def _dirs(folder: Path) -> list[Path]:
    """The folders in `folder`, hidden ones (temporary, set aside) left out."""
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
