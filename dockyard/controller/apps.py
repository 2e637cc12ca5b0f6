"""Apps: interactive jobs, each served on an origin of its own
(`http://<app>--<workspace>.<apps domain>/`, see `app_origins`).

An app runs as an ordinary run of its interactive job. A request for an app without an
active run starts one through the lifecycle, like any trigger (interactive jobs have
concurrency 1, so a running instance is always reused). An app that has had no proxied
traffic and no open connection (a WebSocket, an event stream) for its idle window is stopped:
its run ends `cancelled` ("stopped after 5 min idle"), and the next request starts it again.

The idle window is the job's `execute.timeout` (where dlt stores `idle_timeout`), else the
server's `app_idle_s`. Runs of apps have no hard deadline (`lifecycle.writer._deadline`): an
app in use is never stopped by a timeout.

Activity is kept in memory by the server process that proxies the traffic (one server per
database); after a restart every running app gets a full idle window again.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import Clock
from dockyard.controller import dltadapter
from dockyard.controller.lifecycle import ACTIVE, Lifecycle, Request, RunEnded, RunStatus
from dockyard.controller.loop import Loop
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import InvalidInput

log = logging.getLogger(__name__)
# a start that failed this recently is not retried by the next request (a page that reloads
# itself must not start a crashing app over and over)
RETRY_AFTER_FAILURE_S = 30.0

Locate = Callable[[Session], tuple[Workspace, Job]]


@dataclass(frozen=True, slots=True)
class App:
    """What the proxy needs to know about an app right now."""

    workspace: str
    job_ref: str
    name: str  # the app's name: the job's short name (or section.name when shared)
    status: str  # running | starting | stopping | failed | stopped
    workspace_id: int = 0
    run_id: str | None = None
    number: int | None = None
    port: int | None = None
    # where the app itself serves: "" (at `/` of its origin); runs started before apps had
    # origins of their own kept the `/apps/<ws>/<app>` they were started with
    base_path: str = ""
    reason: str | None = None


def path_name(job_ref: str, all_refs: Iterable[str]) -> str:
    """The app's name (in its host name): the job's short name, or `section.name` when
    another job of the workspace has the same short name."""
    short = dltadapter.short_name(job_ref)
    clashes = [r for r in all_refs if dltadapter.short_name(r) == short]
    return short if len(clashes) <= 1 else job_ref.removeprefix("jobs.")


MCP_LAUNCHER = "dlt._workspace.deployment.launchers.mcp"
MCP_PATH = "mcp"  # dlt's `McpConfiguration.path` default, below the app's origin


def endpoint_path(definition: dict[str, Any]) -> str | None:
    """Where a client talks to the app below its origin, when that is not `/`: `mcp` for an
    MCP server (a module with a FastMCP instance, dlt's MCP launcher, or a job declared
    `interface="mcp"` that returns one). A workspace that configures another `path` for
    the MCP launcher serves there instead."""
    launcher = (definition.get("entry_point") or {}).get("launcher")
    interface = (definition.get("expose") or {}).get("interface")
    return MCP_PATH if launcher == MCP_LAUNCHER or interface == "mcp" else None


def app_name(session: Session, ws: Workspace, job: Job) -> str:
    refs = session.scalars(select(Job.job_ref).where(Job.workspace_id == ws.id))
    return path_name(job.job_ref, refs)


def is_idle(
    started_at: datetime | None,
    last_seen: datetime | None,
    open_connections: int,
    window_s: float,
    since: datetime,
    now: datetime,
) -> bool:
    """No open connection, and nothing seen for `window_s` since the latest of the run's
    start, its last proxied request and `since` (when this process began watching)."""
    if open_connections > 0:
        return False
    latest = max(t for t in (started_at, last_seen, since) if t is not None)
    return now - latest >= timedelta(seconds=window_s)


class Activity:
    """Last proxied request and open connections per run, shared by the proxy (event loop)
    and the idle monitor (a thread)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.since = clock.now()
        self._seen: dict[str, datetime] = {}
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def touch(self, run_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            self._seen[run_id] = now

    def opened(self, run_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            self._seen[run_id] = now
            self._open[run_id] = self._open.get(run_id, 0) + 1

    def closed(self, run_id: str) -> None:
        now = self.clock.now()
        with self._lock:
            self._seen[run_id] = now
            left = self._open.get(run_id, 0) - 1
            if left > 0:
                self._open[run_id] = left
            else:
                self._open.pop(run_id, None)

    def state(self, run_id: str) -> tuple[datetime | None, int]:
        with self._lock:
            return self._seen.get(run_id), self._open.get(run_id, 0)

    def keep_only(self, run_ids: set[str]) -> None:
        """Forget runs that ended (their connections are gone with them)."""
        with self._lock:
            for rid in [r for r in self._seen if r not in run_ids]:
                del self._seen[rid]
            for rid in [r for r in self._open if r not in run_ids]:
                del self._open[rid]


class Connections:
    """Open proxied connections per public link: revoking the link closes them at once."""

    def __init__(self) -> None:
        self._closers: dict[int, set[Callable[[], None]]] = {}
        self._lock = threading.Lock()

    def add(self, link_id: int, close: Callable[[], None]) -> None:
        with self._lock:
            self._closers.setdefault(link_id, set()).add(close)

    def discard(self, link_id: int, close: Callable[[], None]) -> None:
        with self._lock:
            self._closers.get(link_id, set()).discard(close)

    def revoke(self, link_id: int) -> int:
        with self._lock:
            closers = self._closers.pop(link_id, set())
        for close in closers:
            close()
        return len(closers)


class Recent:
    """Running apps looked up lately, so that the proxy does not query the database for the
    app on every request (who asks is still checked every time). An entry lives `ttl_s` at
    most, and goes as soon as its run ends or its app stops answering."""

    def __init__(self, clock: Clock, ttl_s: float = 5.0) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self._apps: dict[object, tuple[App, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: object) -> App | None:
        with self._lock:
            hit = self._apps.get(key)
        if hit is None or self.clock.monotonic() > hit[1]:
            return None
        return hit[0]

    def put(self, key: object, app: App) -> App:
        if app.status == "running":
            with self._lock:
                self._apps[key] = (app, self.clock.monotonic() + self.ttl_s)
        return app

    def forget_run(self, run_id: str) -> None:
        with self._lock:
            for key in [k for k, (a, _) in self._apps.items() if a.run_id == run_id]:
                del self._apps[key]


class Apps:
    """Finds an app's running instance, starts one on demand, stops idle ones."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        lifecycle: Lifecycle,
        idle_s: float,
    ) -> None:
        self.db = db
        self.clock = clock
        self.lifecycle = lifecycle
        self.activity = Activity(clock)
        self.connections = Connections()
        self.recent = Recent(clock)
        lifecycle.events.subscribe(RunEnded, lambda event: self.recent.forget_run(event.run_id))
        self.monitor = IdleMonitor(self, idle_s)
        self._start_lock = threading.Lock()

    def open(self, locate: Locate, start: bool = True, by: str | None = None) -> App:
        """The app's current instance; without one (and `start`), a new run of its job,
        `triggered_by` "app request" (by whom, when `by` is known)."""
        with self.db.session() as session:
            app = self._current(session, *locate(session))
        if not start or app.status not in ("stopped",):
            return app
        with self._start_lock, self.db.session() as session:
            ws, job = locate(session)
            app = self._current(session, ws, job)  # someone may have started it meanwhile
            if app.status != "stopped":
                return app
            request = self._request(job, by)
            run = self.lifecycle.create(session, ws, job, request, self.clock.now())
            app = _app(ws, job, app.name, run)
        log.info("app started", extra={"action": "start_app", "job_ref": app.job_ref})
        return app

    def _request(self, job: Job, by: str | None) -> Request:
        trigger = str(job.definition.get("default_trigger") or "http:")
        return Request(trigger, gated=False, triggered_by=_requested_by(by))

    def _current(self, session: Session, ws: Workspace, job: Job) -> App:
        if job.job_type != "interactive":
            raise InvalidInput(
                f"job {job.job_ref} is a {job.job_type} job, not an app; start it with"
                " `dockyard launch`"
            )
        name = app_name(session, ws, job)
        newest = session.scalar(
            select(Run).where(Run.job_id == job.id).order_by(Run.number.desc()).limit(1)
        )
        active = session.scalar(
            select(Run)
            .where(Run.job_id == job.id, Run.status.in_(ACTIVE))
            .order_by(Run.number.desc())
            .limit(1)
        )
        if active is not None:
            return _app(ws, job, name, active)
        if newest is not None and self._failed_recently(newest):
            return _app(ws, job, name, newest)
        return App(ws.name, job.job_ref, name, "stopped", ws.id)

    def _failed_recently(self, run: Run) -> bool:
        if run.status != "failed" or run.finished_at is None:
            return False
        return (self.clock.now() - run.finished_at).total_seconds() < RETRY_AFTER_FAILURE_S


def _requested_by(by: str | None) -> str:
    return f"app request by {by}" if by else "app request"


def _app(ws: Workspace, job: Job, name: str, run: Run) -> App:
    status = {
        "pending": "starting",
        "starting": "starting",
        "running": "running",
        "cancelling": "stopping",
    }.get(run.status, "failed" if run.status in ("failed", "skipped") else "stopped")
    run_args = (run.entry_point or {}).get("run_args") or {}
    port = run_args.get("port")
    if status == "running" and not port:
        status = "starting"
    return App(
        ws.name,
        job.job_ref,
        name,
        status,
        ws.id,
        run.id,
        run.number,
        int(port) if port else None,
        str(run_args.get("base_path") or ""),
        run.reason,
    )


class IdleMonitor(Loop):
    """Stops apps nobody has used for their idle window (the runner then signals them)."""

    name = "apps"

    def __init__(self, apps: Apps, idle_s: float) -> None:
        super().__init__()
        self.apps = apps
        # often enough for a short window, never busier than twice a second
        self.tick_s = max(0.5, min(5.0, idle_s / 4))

    def step(self) -> float:
        self.sweep(self.apps.clock.now())  # the runner hears each stop (StopRequested)
        return self.tick_s

    def sweep(self, now: datetime) -> list[str]:
        activity = self.apps.activity
        stopped = []
        with self.apps.db.session() as session:
            rows = list(
                session.execute(
                    select(Run.id, Run.started_at, Run.timeout_s, Run.status)
                    .join(Job, Job.id == Run.job_id)
                    .where(Job.job_type == "interactive", Run.status.in_(ACTIVE))
                )
            )
            for run_id, started_at, window_s, status in rows:
                if status != RunStatus.RUNNING:
                    continue
                seen, open_count = activity.state(run_id)
                if not is_idle(started_at, seen, open_count, window_s, activity.since, now):
                    continue
                if self.apps.lifecycle.stop_idle(session, run_id):
                    stopped.append(run_id)
        activity.keep_only({row[0] for row in rows})
        for run_id in stopped:
            log.info("app idle: stopping", extra={"action": "stop_idle_app", "run_id": run_id})
        return stopped
