"""What happened to runs and deployments, told to whoever listens once it is committed.

A writer publishes into the session it writes with; the events go out after that unit of
work commits (`store.db.after_commit`; never after a rollback, so a listener never wakes for
a run that does not exist). Listeners are the loops that act on them (the runner claims a
created run, the scheduler re-reads its next due time, the app cache forgets an ended run);
they are cheap and must not raise — a listener that fails is logged and the others still
hear the event.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from dockyard.controller.lifecycle.status import RunStatus
from dockyard.controller.store.db import after_commit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunCreated:
    """A run row was made: `pending` (the runner claims it), `starting` (a prepared run,
    released by the scheduler) or `skipped`."""

    run_id: str
    status: RunStatus
    batch: bool = True  # a batch job's run (workers may take it), not an app's
    warm: bool = False  # it took a warm pool's held process (`controller/warmpool.py`)


@dataclass(frozen=True, slots=True)
class RunRequeued:
    """A run went back to `pending` (its process was never started): the runner claims it."""

    run_id: str


@dataclass(frozen=True, slots=True)
class StopRequested:
    """A launched run must be stopped (cancel, idle app): the runner signals it."""

    run_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: str
    status: RunStatus
    holder: str | None = None  # the node that held it (None: it never started)


@dataclass(frozen=True, slots=True)
class Deployed:
    """A workspace's jobs were reconciled to a new commit."""

    workspace: str
    sha: str


@dataclass(frozen=True, slots=True)
class ScheduleChanged:
    """A job's timed triggers were paused or resumed: the scheduler re-reads its next due."""

    job_id: int


Event = RunCreated | RunRequeued | StopRequested | RunEnded | Deployed | ScheduleChanged
E = TypeVar("E", RunCreated, RunRequeued, StopRequested, RunEnded, Deployed, ScheduleChanged)


class Events:
    """Subscriptions by event type; `publish` defers delivery to the session's commit."""

    def __init__(self) -> None:
        self._listeners: dict[type, list[Callable[[Any], None]]] = {}

    def subscribe(self, kind: type[E], listener: Callable[[E], None]) -> None:
        self._listeners.setdefault(kind, []).append(listener)

    def publish(self, session: Session, happened: Event) -> None:
        """Deliver `happened` once `session`'s unit of work has committed."""
        after_commit(session, lambda: self.deliver(happened))

    def deliver(self, happened: Event) -> None:
        """Deliver at once (for what is not written in a transaction)."""
        for listener in self._listeners.get(type(happened), ()):
            try:
                listener(happened)
            except Exception:  # one listener's bug must not stop the others or the writer
                log.exception("event listener failed", extra={"action": "event"})
