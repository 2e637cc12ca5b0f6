"""An in-process controller for the scheduler benchmarks, built like the integration tests'
`World` (tests/integration/test_scheduler.py): a real SQLite file with the real migrations, a
real bare workspace repository, the real reconciler, lifecycle and scheduler. No server, no
runner: runs stay as the scheduler or the lifecycle made them.

`CommitStamps` records, for every run row, the wall time at which the transaction that
inserted it committed. A run's `created_at` is the clock read once per scheduler tick (or per
trigger request), so it cannot show how long the later rows of a batch waited; the commit
stamp can (it is when the row became visible to the runner and the API).
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from dockyard.clock import Clock, SystemClock
from dockyard.controller import gitstore, manifests, workspaces
from dockyard.controller.lifecycle import Events, Lifecycle
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.runtime_config import Defaults
from dockyard.controller.scheduling.loop import Scheduler
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace

WORKSPACE = "bench"
LAUNCHER = "dlt._workspace.deployment.launchers.job"
SIGNATURE = pygit2.Signature("bench", "bench@localhost")
REQUIREMENTS = {
    "dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"},
    "default_groups": ["main"],
    "groups": {"main": ["dlt==1.31.0"]},
    "python_version": "3.11",
}
UNSET = object()


def job(
    name: str, triggers: Sequence[str], tags: Sequence[str] = (), concurrency: object = UNSET
) -> dict[str, Any]:
    """A job definition of the shape dlt writes (`@run.job` in module `bench`)."""
    definition: dict[str, Any] = {
        "engine_version": 2,
        "job_ref": f"jobs.bench.{name}",
        "entry_point": {
            "module": "bench",
            "function": name,
            "job_type": "batch",
            "launcher": LAUNCHER,
        },
        "triggers": list(triggers),
        "execute": {"concurrency": 1 if concurrency is UNSET else concurrency},
        "expose": {"tags": list(tags), "manual": True},
    }
    timed = [t for t in triggers if t.split(":", 1)[0] in ("schedule", "every", "once")]
    if timed:
        definition["default_trigger"] = timed[0]
    return definition


@dataclass
class World:
    db: Database
    repos: Path
    repo: Any  # pygit2.Repository (untyped)
    lifecycle: Lifecycle
    scheduler: Scheduler
    reconciler: Reconciler

    def commit(self, manifest: dict[str, Any], source: str = "x = 1\n") -> str:
        files = {
            gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
            gitstore.REQUIREMENTS: json.dumps(REQUIREMENTS, indent=2).encode(),
            "code/bench.py": source.encode(),
        }
        entries = {p: gitstore.FileEntry(gitstore.MODE_FILE, d) for p, d in files.items()}
        tree = gitstore.write_tree(self.repo, entries)
        head = gitstore.head_sha(self.repo)
        parents = [pygit2.Oid(hex=head)] if head else []
        oid = self.repo.create_commit(
            gitstore.BRANCH, SIGNATURE, SIGNATURE, "deploy", tree, parents
        )
        return str(oid)

    def deploy(self, jobs: list[dict[str, Any]]) -> float:
        """Commit a manifest of `jobs` and reconcile it; returns the reconcile's seconds."""
        return self.deploy_manifest(
            {"engine_version": 2, "deployment_module": "__deployment__", "jobs": jobs}
        )

    def deploy_manifest(self, manifest: dict[str, Any]) -> float:
        self.commit(manifest)
        start = time.perf_counter()
        self.reconciler.reconcile(WORKSPACE)
        return time.perf_counter() - start

    def workspace(self, session: Session) -> Workspace:
        return workspaces.get(session, WORKSPACE)

    def job(self, session: Session, name: str) -> Job:
        row = session.scalar(select(Job).where(Job.job_ref == f"jobs.bench.{name}"))
        if row is None:
            raise LookupError(name)
        return row

    def runs(self) -> list[Run]:
        with self.db.session() as session:
            return list(session.scalars(select(Run)))

    def close(self) -> None:
        self.scheduler.stop()
        self.db.dispose()


def make_world(tmp: Path, clock: Clock | None = None, database_url: str | None = None) -> World:
    """A world in `tmp`, its database a SQLite file there unless `database_url` names one."""
    clock = clock or SystemClock()
    tmp.mkdir(parents=True, exist_ok=True)
    db = Database(database_url or f"sqlite:///{tmp / 'dockyard.db'}")
    db.migrate()
    repos = tmp / "repos"
    with db.session() as session:
        workspaces.create(session, repos, WORKSPACE, hooks=lambda repo: None)  # nothing pushed
    events = Events()
    lifecycle = Lifecycle(repos, Defaults(7200.0, 30.0), events=events)
    scheduler = Scheduler(db, clock, lifecycle)  # woken by the reconciler's Deployed
    reconciler = Reconciler(db, repos, events, clock)
    repo = gitstore.open_repo(workspaces.repo_path(repos, WORKSPACE))
    return World(db, repos, repo, lifecycle, scheduler, reconciler)


@dataclass
class CommitStamps:
    """Run id → `time.time()` right after the commit of the transaction that inserted it."""

    at: dict[str, float] = field(default_factory=dict)

    def install(self) -> None:
        event.listen(Session, "after_flush", self._flushed)
        event.listen(Session, "after_commit", self._committed)
        event.listen(Session, "after_rollback", self._rolled_back)

    def remove(self) -> None:
        event.remove(Session, "after_flush", self._flushed)
        event.remove(Session, "after_commit", self._committed)
        event.remove(Session, "after_rollback", self._rolled_back)

    def _flushed(self, session: Session, _context: Any) -> None:
        # in after_flush, `session.new` still lists the objects this flush inserted
        new = [obj.id for obj in session.new if isinstance(obj, Run)]
        if new:
            session.info.setdefault("bench_runs", []).extend(new)

    def _committed(self, session: Session) -> None:
        stamp = time.time()
        for run_id in session.info.pop("bench_runs", []):
            self.at.setdefault(run_id, stamp)

    def _rolled_back(self, session: Session) -> None:
        session.info.pop("bench_runs", None)


def run_row(job_row: Job, number: int, now: datetime) -> dict[str, Any]:
    """A run row as plain column values (for the floors: direct inserts)."""
    return {
        "id": f"floor-{job_row.id}-{number}",
        "workspace_id": job_row.workspace_id,
        "job_id": job_row.id,
        "number": number,
        "trigger": "manual:floor",
        "status": "pending",
        "created_at": now,
        "refresh": False,
        "timeout_s": 7200.0,
        "grace_s": 30.0,
    }


def insert_one(db: Database, row: dict[str, Any]) -> float:
    """Seconds to insert one run row in its own transaction (session, INSERT, commit)."""
    start = time.perf_counter()
    with db.session() as session:
        session.execute(insert(Run).values(**row))
    return time.perf_counter() - start


def insert_many(db: Database, rows: list[dict[str, Any]]) -> float:
    """Seconds to insert `rows` with one executemany in one transaction."""
    start = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)  # type: ignore[arg-type]
    return time.perf_counter() - start
