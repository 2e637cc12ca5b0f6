"""Wake-ups across servers sharing one PostgreSQL (LISTEN/NOTIFY).

In one process the lifecycle's `Events` wake the loops after a commit (a created run wakes the
runner, a deployment the scheduler). Several servers on one database would otherwise see
another's new run only at their next poll. Here each committed event is also sent as a
`NOTIFY` on one channel (by a sender thread, coalesced, so a writer never waits on it), and
each server listens on a dedicated connection and wakes its matching loops. A wake-up is only
a hint: the loops re-read the database, so a lost notification (a dropped connection) costs at
most a poll interval, and after reconnecting every loop is woken once. SQLite has no such
thing and needs none (one server per file): nothing here runs there.
"""

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from dockyard.controller.lifecycle.events import (
    Deployed,
    Events,
    RunCreated,
    RunEnded,
    RunRequeued,
    ScheduleChanged,
    StopRequested,
)

log = logging.getLogger(__name__)

CHANNEL = "dockyard_wake"
KINDS: tuple[type, ...] = (
    RunCreated,
    RunRequeued,
    StopRequested,
    RunEnded,
    Deployed,
    ScheduleChanged,
)
RETRY_S = 2.0  # between attempts to (re)connect the listener


class Crossing:
    """Sends this server's committed events to the others and wakes loops on theirs."""

    def __init__(self, engine: Engine, wakers: dict[str, Iterable[Callable[[], None]]]) -> None:
        self.engine = engine
        self.origin = uuid.uuid4().hex[:12]  # our own notifications come back: skipped
        self.wakers = {kind: list(callables) for kind, callables in wakers.items()}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._send = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listening: Any = None  # the listener's psycopg connection, for stop()
        self.ready = threading.Event()  # set once LISTEN is in place (tests wait on it)

    def watch(self, events: Events) -> None:
        """Forward every kind of event that wakes a loop (after its commit, as delivered)."""
        for kind in KINDS:
            events.subscribe(kind, lambda event: self.send(type(event).__name__))

    def send(self, kind: str) -> None:
        with self._lock:
            self._pending.add(kind)
        self._send.set()

    def start(self) -> None:
        for target, name in ((self._sender, "notify-send"), (self._listener, "notify-listen")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._send.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _sender(self) -> None:
        while not self._stop.is_set():
            self._send.wait()
            self._send.clear()
            with self._lock:
                kinds, self._pending = sorted(self._pending), set()
            if kinds and not self._stop.is_set():
                self._notify(kinds)

    def _notify(self, kinds: list[str]) -> None:
        try:
            with self.engine.connect() as conn:
                for kind in kinds:
                    payload = f"{kind}:{self.origin}"
                    conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})
                conn.commit()
        except SQLAlchemyError:  # a hint only: the others still find it at their next poll
            log.warning("could not notify other servers", extra={"action": "notify"})

    def _listener(self) -> None:
        failures = 0  # in a row: one warning per outage, not one per attempt
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 (dropped connection, database restart)
                failures = self._failed(failures, exc)
            self.ready.clear()
            self._stop.wait(RETRY_S)

    def _failed(self, failures: int, exc: Exception) -> int:
        if self.ready.is_set():
            failures = 0  # it had been listening: this is a new outage
        if failures == 0:
            log.warning(
                "listening for other servers failed; polling meanwhile, reconnecting",
                extra={
                    "action": "notify_listen",
                    "error": (str(exc).splitlines() or [""])[0][:300],
                },
            )
        return failures + 1

    def _listen(self) -> None:
        import psycopg

        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        with psycopg.connect(*cargs, **{**cparams, "autocommit": True}) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._wake_all()  # whatever was sent while we were not listening
            self.ready.set()
            log.info("listening for other servers", extra={"action": "notify_listen"})
            while not self._stop.is_set():
                for note in conn.notifies(timeout=1.0):
                    self._on(note.payload)

    def _on(self, payload: str) -> None:
        kind, _, origin = payload.partition(":")
        if origin == self.origin:
            return
        log.debug("woken by another server", extra={"action": "wake", "kind": kind})
        for wake in self.wakers.get(kind, ()):
            wake()

    def _wake_all(self) -> None:
        for wake in {w for callables in self.wakers.values() for w in callables}:
            wake()
