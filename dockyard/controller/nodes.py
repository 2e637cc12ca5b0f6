"""Nodes: the processes that hold runs, and what happens to runs when one disappears.

A node is a `dockyard server` (kind `controller`) or, later, a worker. Each has a name that
outlives restarts (`DOCKYARD_NODE_NAME`, default the host name), so a restarted controller
adopts the runs it held. A node registers when it starts and heartbeats every
`HEARTBEAT_S`; one whose last heartbeat is `LOST_AFTER` old (three missed) is lost, and any
live controller ends the runs it held `failed` ("controller A lost (last heartbeat …)"). Such
a run is never requeued: its process may still be running somewhere, and nobody may start it
a second time behind its back. Ending it is a guarded single-row write on status, holder
and claim epoch, so it happens once even when several controllers notice together, and a
holder that comes back finds its writes refused (`lifecycle.Claim`).

No false "lost" after a database outage: while PostgreSQL is away nobody heartbeats, so when it
comes back every node's last heartbeat is old. A controller therefore judges others only once
it has itself heartbeated continuously for `LOST_AFTER` (`may_judge`): by then every node that
survived the outage has heartbeated again. One clock: on PostgreSQL heartbeats are written and
judged with the database's clock (`clock_timestamp()`), so hosts whose clocks disagree do not
take each other for lost; on SQLite (one box) the injected `Clock` is the clock.

Two live processes must not share a name: the second refuses to start. A name whose last
heartbeat is fresh is taken over at once only when it was this host's and its process is
gone (the usual restart after a crash); otherwise the newcomer watches the heartbeat for up to
`LOST_AFTER` and refuses as soon as it moves.
"""

import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.clock import Clock
from dockyard.controller import logs
from dockyard.controller.lifecycle import LAUNCHED, Claim, Lifecycle, RunStatus
from dockyard.controller.loop import Loop
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Node, Run
from dockyard.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
MISSED = 3
LOST_AFTER = timedelta(seconds=HEARTBEAT_S * MISSED)
SWEEP_MAX = 500  # runs ended per round: a lost node with more is finished in later rounds
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KINDS = ("controller", "worker")
UP, STOPPED = "up", "stopped"


# pure rules -----------------------------------------------------------------------------
def check_name(name: str) -> str:
    """`name` if it can name a node (letters, digits, `.`, `_`, `-`; ≤ 64), else InvalidInput."""
    if not NAME.fullmatch(name):
        raise InvalidInput(
            f"node name {name[:80]!r} is not valid: set DOCKYARD_NODE_NAME to letters, digits,"
            " '.', '_' or '-' (at most 64, starting with a letter or digit)"
        )
    return name


def is_lost(last_heartbeat: datetime, now: datetime) -> bool:
    """Three heartbeats missed."""
    return now - last_heartbeat >= LOST_AFTER


def connected_since(since: float | None, last_beat: float | None, now: float) -> float:
    """When this node's continuous heartbeating began (monotonic seconds), after a beat at
    `now`: it begins again when there was none before or the gap since the last one was as
    long as `LOST_AFTER` (a pause, or an outage between two beats)."""
    if since is None or last_beat is None or now - last_beat >= LOST_AFTER.total_seconds():
        return now
    return since


def may_judge(since: float | None, now: float) -> bool:
    """Whether this node has heartbeated continuously for `LOST_AFTER`, so that a node it saw
    no heartbeat from in that window is lost rather than just back from the same outage."""
    return since is not None and now - since >= LOST_AFTER.total_seconds()


def state(stored: str, last_heartbeat: datetime, now: datetime) -> str:
    """What a listing shows: `alive`, `stopped` (it said so, and has not come back), `lost`."""
    if stored == STOPPED:
        return "stopped"
    return "lost" if is_lost(last_heartbeat, now) else "alive"


def clock_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S UTC")


def lost_reason(kind: str, name: str, last_heartbeat: datetime, stored: str = UP) -> str:
    """The reason a lost holder's run ends with."""
    how = "stopped" if stored == STOPPED else "lost"
    return f"{kind} {name} {how} (last heartbeat {clock_time(last_heartbeat)})"


def may_take_over(row: "Seen", me: "Identity", now: datetime, pid_alive: bool) -> bool:
    """Whether a start may take the name `row` holds without watching its heartbeat first:
    it stopped cleanly, its heartbeat is old, or it was this host's and its process is gone
    (or it is this very process number: a container restarted)."""
    if row.state == STOPPED or is_lost(row.last_heartbeat_at, now):
        return True
    return row.host == me.host and (row.pid == me.pid or not pid_alive)


# identity and registration ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    kind: str = "controller"
    pool: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    slots: int | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token_id: int | None = None  # a worker's: the worker token it registered with


@dataclass(frozen=True, slots=True)
class Seen:
    """A node row as read, for the take-over decision."""

    host: str
    pid: int
    state: str
    incarnation: int
    last_heartbeat_at: datetime


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Membership:
    """This process as a node: `join` at start, `beat` every `HEARTBEAT_S`, `leave` at stop."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        me: Identity,
        sleep: Callable[[float], None] = time.sleep,
        db_clock: bool = False,
    ) -> None:
        self.db = db
        self.clock = clock
        self.me = me
        self.sleep = sleep
        self.db_clock = db_clock  # heartbeats by the database's clock (PostgreSQL)
        self.incarnation: int | None = None
        self.fenced = False  # another process took the name: hold nothing more

    @property
    def name(self) -> str:
        return self.me.name

    def now(self, session: Session | None = None) -> datetime:
        """The time heartbeats are written and judged by (the database's, or the clock's)."""
        if not self.db_clock:
            return self.clock.now()
        if session is not None:
            return database_now(session)
        with self.db.session() as own:
            return database_now(own)

    def join(self) -> datetime | None:
        """Register (insert or take over the row); returns the previous incarnation's last
        heartbeat (None for a new name). Conflict when a live process holds the name."""
        seen = self._read()
        if seen is not None and not may_take_over(seen, self.me, self.now(), pid_alive(seen.pid)):
            self._watch(seen)
        with self.db.session() as session:
            now = self.now(session)
            if seen is None:
                self.incarnation = 1
                session.add(self._row(now))
                try:
                    session.flush()
                except IntegrityError:
                    raise self._in_use(None) from None
            elif not self._take_over(session, seen, now):
                raise self._in_use(self._read())
        log.info(
            "node registered",
            extra={"action": "node_join", "node": self.name, "incarnation": self.incarnation},
        )
        return None if seen is None else seen.last_heartbeat_at

    def _watch(self, seen: Seen) -> None:
        """Up to `LOST_AFTER` (by then silence means lost): Conflict as soon as the row moves."""
        for _ in range(int(LOST_AFTER.total_seconds())):
            self.sleep(1.0)
            again = self._read()
            if again is not None and again != seen:
                raise self._in_use(again)

    def _take_over(self, session: Session, seen: Seen, now: datetime) -> bool:
        self.incarnation = seen.incarnation + 1
        result = session.execute(
            update(Node)
            .where(Node.name == self.me.name, Node.incarnation == seen.incarnation)
            .values(incarnation=self.incarnation, **self._started(now))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def _row(self, now: datetime) -> Node:
        return Node(name=self.me.name, incarnation=1, **self._started(now))

    def _started(self, now: datetime) -> dict[str, Any]:
        """The columns a start writes, for a new row and for a taken-over one alike."""
        me = self.me
        return {
            "kind": me.kind,
            "pool": me.pool,
            "labels": dict(me.labels),
            "slots": me.slots,
            "host": me.host,
            "pid": me.pid,
            "token_id": me.token_id,
            "state": UP,
            "started_at": now,
            "last_heartbeat_at": now,
        }

    def _read(self) -> Seen | None:
        with self.db.session() as session:
            row = session.scalar(select(Node).where(Node.name == self.name))
            if row is None:
                return None
            return Seen(row.host, row.pid, row.state, row.incarnation, row.last_heartbeat_at)

    def _in_use(self, seen: Seen | None) -> Conflict:
        where = "" if seen is None else f" (host {seen.host} pid {seen.pid},"
        when = "" if seen is None else f" last heartbeat {clock_time(seen.last_heartbeat_at)})"
        return Conflict(
            f"node name {self.name} is in use by another live server{where}{when}: check that"
            " its heartbeat is fresh (`dockyard worker list`) and stop it, or give this one"
            " another DOCKYARD_NODE_NAME"
        )

    def beat(self) -> bool:
        """Heartbeat; False (and `fenced`) when a newer incarnation took the name."""
        if self.incarnation is None or self.fenced:
            return False
        with self.db.session() as session:
            moved = beat(session, self.name, self.incarnation, self.now(session))
        if not moved:
            self.fenced = True
            log.error(
                "another process took this node's name: this one holds nothing more",
                extra={"action": "node_fenced", "node": self.name},
            )
        return not self.fenced

    def leave(self) -> None:
        """A clean stop: the listing says `stopped` (its runs are still ended once its
        heartbeat is old, unless it comes back first)."""
        if self.incarnation is None or self.fenced:
            return
        with self.db.session() as session:
            session.execute(
                update(Node)
                .where(Node.name == self.name, Node.incarnation == self.incarnation)
                .values(state=STOPPED)
            )


def database_now(session: Session) -> datetime:
    """PostgreSQL's clock (the real time, not the transaction's start), in UTC."""
    value = session.scalar(select(func.clock_timestamp()))
    assert isinstance(value, datetime)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def beat(session: Session, name: str, incarnation: int, now: datetime) -> bool:
    """A node's heartbeat; False when a newer incarnation took the name."""
    result = session.execute(
        update(Node)
        .where(Node.name == name, Node.incarnation == incarnation)
        .values(last_heartbeat_at=now, state=UP)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# the runs of lost nodes -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Orphan:
    """A run whose holder is lost, with what ending it needs."""

    run_id: str
    status: RunStatus
    claim: Claim
    reason: str


def orphans(session: Session, me: str, now: datetime, limit: int = SWEEP_MAX) -> list[Orphan]:
    """The launched runs held by lost nodes (never `me`: this process just heartbeated)."""
    rows = session.execute(
        select(
            Run.id,
            Run.status,
            Node.name,  # the run's holder (the join)
            Run.claim_epoch,
            Node.kind,
            Node.state,
            Node.last_heartbeat_at,
        )
        .join(Node, Node.name == Run.holder)
        .where(
            Run.status.in_([s.value for s in LAUNCHED]),
            Node.name != me,
            Node.last_heartbeat_at <= now - LOST_AFTER,
        )
        .order_by(Run.created_at)
        .limit(limit)
    )
    return [
        Orphan(rid, RunStatus(status), Claim(holder, epoch), lost_reason(kind, holder, last, st))
        for rid, status, holder, epoch, kind, st, last in rows
    ]


def end_orphans(
    db: Database, lifecycle: Lifecycle, me: str, now: datetime, run_dir: Callable[[str], Path]
) -> list[str]:
    """End every run a lost node held, `failed` with the reason, once: each end is guarded by
    status, holder and claim epoch (another controller may be ending the same runs)."""
    with db.session() as session:
        found = orphans(session, me, now)
    ended = []
    for orphan in found:
        with db.session() as session:
            run = session.get(Run, orphan.run_id)
            if run is None:
                continue
            ended_here = lifecycle.end(
                session,
                run,
                [orphan.status],
                RunStatus.FAILED,
                now,
                lost=True,
                claim=orphan.claim,
                reason=orphan.reason,
            )
        if ended_here is not None:
            ended.append(orphan.run_id)
            logs.system(run_dir(orphan.run_id), f"run failed: {orphan.reason}")
            log.warning(
                "run of a lost node ended",
                extra={"action": "end_orphan", "run_id": orphan.run_id, "reason": orphan.reason},
            )
    return ended


# the listing ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    kind: str
    pool: str | None
    labels: dict[str, str]
    slots: int | None
    slots_in_use: int
    host: str
    started_at: datetime
    last_heartbeat_at: datetime
    state: str


def listing(session: Session, now: datetime) -> list[NodeView]:
    """Every node, controllers first, with the runs it holds in starting/running."""
    in_use = dict(
        session.execute(
            select(Run.holder, func.count())
            .where(Run.holder.is_not(None), Run.status.in_(["starting", "running"]))
            .group_by(Run.holder)
        ).all()
    )
    nodes = session.scalars(select(Node).order_by(Node.kind, Node.name))
    return [
        NodeView(
            n.name,
            n.kind,
            n.pool,
            {str(k): str(v) for k, v in (n.labels or {}).items()},
            n.slots,
            int(in_use.get(n.name, 0)),
            n.host,
            n.started_at,
            n.last_heartbeat_at,
            state(n.state, n.last_heartbeat_at, now),
        )
        for n in nodes
    ]


def others_alive(session: Session, me: str, now: datetime) -> bool:
    """Whether another controller is alive (a stopping one then leaves pending work to it)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Node)
            .where(
                Node.name != me,
                Node.kind == "controller",
                Node.state == UP,
                Node.last_heartbeat_at > now - LOST_AFTER,
            )
        )
        or 0
    ) > 0


class Heartbeat(Loop):
    """Every `HEARTBEAT_S`: this node's heartbeat, then the runs of lost nodes ended (once
    this node has heartbeated continuously for `LOST_AFTER`: see `may_judge`)."""

    name = "heartbeat"

    def __init__(
        self,
        membership: Membership,
        lifecycle: Lifecycle,
        run_dir: Callable[[str], Path],
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        super().__init__()
        self.membership = membership
        self.lifecycle = lifecycle
        self.run_dir = run_dir
        self.interval_s = interval_s
        self.since: float | None = None  # continuous heartbeating began (monotonic)
        self.last_beat: float | None = None
        # more judgements made only once this node may judge (runs nobody can take), given
        # the node's now
        self.judges: list[Callable[[datetime], object]] = []

    def step(self) -> float:
        m = self.membership
        try:
            beaten = m.beat()
        except Exception:
            self.since = None  # the database is away (or worse): judge nobody until back
            raise
        mono = m.clock.monotonic()
        self.since, self.last_beat = connected_since(self.since, self.last_beat, mono), mono
        if beaten and may_judge(self.since, mono):
            try:
                end_orphans(m.db, self.lifecycle, m.name, m.now(), self.run_dir)
                for judge in self.judges:
                    judge(m.now())
            except Exception:
                self.since = None
                raise
        return self.interval_s
