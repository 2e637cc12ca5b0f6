"""Named leases: work that must happen once across several controllers on one database (the
reconcile sweep, retention, the GitHub sweeper and its redelivery) runs only in the server
process that holds that work's lease.

A lease is one row (`lease`: name, holder, epoch, acquired_at, expires_at). Every change to
it is a guarded single-row UPDATE whose `rowcount` says whether it happened, so two servers
racing for it cannot both win on SQLite or PostgreSQL:

- **take** a free (released) or expired lease: `epoch` + 1, the expiry `ttl_s` from now;
- **renew** one's own (same holder *and* epoch): the expiry moved, the epoch kept;
- **insert** a missing row (epoch 1) in a savepoint: a unique-key race is lost quietly
  (PostgreSQL aborts the whole transaction on an IntegrityError; the savepoint keeps it);
- **release** on a clean stop (holder cleared, epoch kept), so another server takes it at
  its next renewal instead of waiting for the expiry.

Fencing: believing one holds a lease is never enough to write, because a holder can be
paused past its expiry (SIGSTOP, a long GC, a partition) while another takes it. So a leased
loop's writes run `Fence(session)` in their own transaction: a guarded
`UPDATE lease … WHERE name AND holder AND epoch` that must touch one row, else `LeaseLost`
is raised and the transaction rolls back. The UPDATE also locks the row (PostgreSQL) or the
database (SQLite) until commit, so a taker's UPDATE waits and the stale write either commits
before the new epoch exists or not at all.

One `Keeper` loop per server process renews (every `renew_s`, default 3 s; TTL 10 s) and
tries to take each named lease; a dead holder is thus replaced within TTL + renewal ≤ 15 s.
The holder identity is random per process start (`<hostname>:<pid>:<hex>`), so a restarted
server is a new holder and never mistakes an old epoch for its own. Expiry is compared with
each server's own clock: clocks must agree to well within the TTL (NTP), which only decides
how soon a dead holder is replaced; fencing, not the clock, prevents two writers.
"""

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.clock import Clock
from dockyard.controller.loop import Loop, is_outage
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Lease
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)

TTL_S = 10.0
RENEW_S = 3.0
SWEEP = "reconcile-sweep"
RETENTION = "retention"
GITHUB_SWEEP = "github-sweep"

Action = Literal["insert", "take", "renew", "wait"]


class LeaseLost(DockyardError):
    """This server no longer holds the lease its write was fenced by; nothing was written."""

    code = "lease_lost"


def holder_identity() -> str:
    """This process's holder name, new at every start: `<hostname>:<pid>:<8 hex>`."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{secrets.token_hex(4)}"


# pure decisions ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Seen:
    """The lease row as read: who holds it, at which epoch, until when."""

    holder: str | None
    epoch: int
    expires_at: datetime


def decide(seen: Seen | None, me: str, mine: int | None, now: datetime) -> Action:
    """What to try for a lease: `mine` is the epoch this process believes it holds (None:
    none). Renewing needs the same holder and epoch (even past the expiry: an unchanged epoch
    means nobody else held it meanwhile); a released or expired lease is taken."""
    if seen is None:
        return "insert"
    if seen.holder == me and seen.epoch == mine:
        return "renew"
    if seen.holder is None or seen.expires_at <= now:
        return "take"
    return "wait"


# the guarded statements -------------------------------------------------------------------
class Leases:
    """The lease rows, changed only by guarded single-row statements."""

    def __init__(self, db: Database, clock: Clock, holder: str, ttl_s: float = TTL_S) -> None:
        self.db = db
        self.clock = clock
        self.holder = holder
        self.ttl_s = ttl_s

    def hold(self, name: str, mine: int | None) -> int | None:
        """Take, renew or create the lease; the epoch now held, or None if another holds it."""
        now = self.clock.now()
        until = now + timedelta(seconds=self.ttl_s)
        with self.db.session() as session:
            row = session.get(Lease, name, populate_existing=True)
            seen = None if row is None else Seen(row.holder, row.epoch, row.expires_at)
            action = decide(seen, self.holder, mine, now)
            if action == "insert":
                return self._insert(session, name, now, until)
            if seen is None or action == "wait":
                return None
            if action == "renew":
                guard = (Lease.holder == self.holder, Lease.epoch == seen.epoch)
                values: dict[str, object] = {"expires_at": until}
            else:  # take: only from exactly what was seen, so one racer wins
                free = or_(Lease.holder.is_(None), Lease.expires_at <= now)
                guard = (Lease.epoch == seen.epoch, free)
                values = {"holder": self.holder, "epoch": seen.epoch + 1}
                values |= {"acquired_at": now, "expires_at": until}
            done = session.execute(update(Lease).where(Lease.name == name, *guard).values(values))
            ok = done.rowcount == 1  # type: ignore[attr-defined]
            return (seen.epoch if action == "renew" else seen.epoch + 1) if ok else None

    def _insert(self, session: Session, name: str, now: datetime, until: datetime) -> int | None:
        try:
            with session.begin_nested():
                session.add(Lease(name=name, holder=self.holder, epoch=1, acquired_at=now,
                                  expires_at=until))  # fmt: skip
        except IntegrityError:  # another server inserted it first: its lease, not ours
            return None
        return 1

    def release(self, name: str, epoch: int) -> bool:
        """Give the lease up (clean stop): the next taker need not wait for the expiry."""
        with self.db.session() as session:
            done = session.execute(
                update(Lease)
                .where(Lease.name == name, Lease.holder == self.holder, Lease.epoch == epoch)
                .values(holder=None, expires_at=self.clock.now())
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def fence(self, session: Session, name: str, epoch: int) -> None:
        """In a write transaction: raise `LeaseLost` (rolling it back) unless this process
        still holds `name` at `epoch`; the row stays locked until the transaction ends."""
        done = session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == self.holder, Lease.epoch == epoch)
            .values(epoch=Lease.epoch)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(_lost(name, epoch))

    def holds(self, name: str, epoch: int) -> bool:
        """Whether the row still names this process at `epoch` (a read, for work that has
        no transaction to fence, such as removing files)."""
        with self.db.session() as session:
            row = session.get(Lease, name, populate_existing=True)
            return row is not None and row.holder == self.holder and row.epoch == epoch


def _lost(name: str, epoch: int) -> str:
    return (
        f"lease {name!r} (epoch {epoch}) is no longer held by this server: another server"
        " took it over; this server's write was refused and it will try again"
    )


# what a leased loop holds -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fence:
    """A held lease at one epoch: call it in a write transaction (see `Leases.fence`)."""

    leases: Leases
    name: str
    epoch: int

    def __call__(self, session: Session) -> None:
        self.leases.fence(session, self.name, self.epoch)

    def check(self) -> None:
        """For work outside a transaction: raise `LeaseLost` unless still held."""
        if not self.leases.holds(self.name, self.epoch):
            raise LeaseLost(_lost(self.name, self.epoch))


@dataclass(frozen=True, slots=True)
class _State:
    epoch: int | None
    valid_until: float  # monotonic seconds


class Guard:
    """One named lease as this process sees it, kept up to date by the `Keeper`."""

    def __init__(self, leases: Leases, name: str) -> None:
        self.leases = leases
        self.name = name
        self._state = _State(None, 0.0)
        self._acquired: list[Callable[[], None]] = []

    def held(self) -> Fence | None:
        """The fence of the current epoch if this process believes it holds the lease (its
        last renewal was asked less than a TTL ago), else None: skip the work."""
        state = self._state
        if state.epoch is None or self.leases.clock.monotonic() >= state.valid_until:
            return None
        return Fence(self.leases, self.name, state.epoch)

    def on_acquired(self, callback: Callable[[], None]) -> None:
        """Called (from the keeper's thread) when this process takes the lease over."""
        self._acquired.append(callback)

    def refresh(self, notify: bool = True) -> None:
        asked = self.leases.clock.monotonic()
        before = self._state.epoch
        epoch = self.leases.hold(self.name, before)
        self._state = _State(epoch, asked + self.leases.ttl_s if epoch is not None else 0.0)
        if epoch != before:
            _log_change(self.name, self.leases.holder, before, epoch)
            if epoch is not None and notify:
                for callback in self._acquired:
                    callback()

    def release(self) -> None:
        epoch, self._state = self._state.epoch, _State(None, 0.0)
        if epoch is not None and self.leases.release(self.name, epoch):
            log.info("lease released", extra={"action": "lease", "lease": self.name})


def _log_change(name: str, holder: str, before: int | None, epoch: int | None) -> None:
    extra = {"action": "lease", "lease": name, "holder": holder, "epoch": epoch or before}
    if epoch is None:
        log.warning("lease lost", extra=extra)
    else:
        log.info("lease taken", extra=extra)


class Keeper(Loop):
    """Renews and takes this process's named leases every `renew_s` seconds; releases them
    on stop. `start` takes them once before returning, so a lone server holds its leases
    before its loops' first step (nothing changes for the single-box default)."""

    name = "leases"

    def __init__(self, leases: Leases, renew_s: float = RENEW_S) -> None:
        super().__init__()
        self.leases = leases
        self.renew_s = renew_s
        self._guards: dict[str, Guard] = {}
        self._lock = threading.Lock()

    def guard(self, name: str) -> Guard:
        with self._lock:
            return self._guards.setdefault(name, Guard(self.leases, name))

    def guards(self) -> list[Guard]:
        with self._lock:
            return list(self._guards.values())

    def start(self) -> None:
        self._refresh_all(notify=False)  # the loops starting next see their leases at once
        super().start()

    def step(self) -> float:
        outage = self._refresh_all(notify=True)
        if outage is not None:
            raise outage  # the loop says so once per outage and retries sooner
        return self.renew_s

    def _refresh_all(self, notify: bool) -> Exception | None:
        """Every guard refreshed; the database error if it was away (then not logged here:
        once per outage is the loop's job)."""
        outage: Exception | None = None
        for guard in self.guards():
            try:
                guard.refresh(notify)
            except Exception as exc:  # noqa: BLE001 (the database away: believed lost at TTL)
                if is_outage(exc):
                    outage = exc
                    continue
                log.warning(
                    "lease not renewed",
                    extra={"action": "lease", "lease": guard.name, "error": str(exc)[:300]},
                )
        return outage

    def on_stop(self) -> None:
        for guard in self.guards():
            try:
                guard.release()
            except Exception as exc:  # noqa: BLE001 (it expires by itself)
                log.warning(
                    "lease not released",
                    extra={"action": "lease", "lease": guard.name, "error": str(exc)[:300]},
                )


def listing(db: Database) -> list[Lease]:
    """Every lease row, by name (for `GET /api/v1/leases`)."""
    with db.session() as session:
        return list(session.scalars(select(Lease).order_by(Lease.name)))
