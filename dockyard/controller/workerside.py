"""The server's side of `dockyard worker`: hosts that run batch runs and talk to the server
over HTTP only (never to the database; `web/api_worker.py` is the thin shell in front).

A worker registers as a node (kind `worker`, the take-over rules of `nodes.Membership`),
heartbeats, and claims pending batch runs with the same guarded write the embedded runner
uses (`Lifecycle.claim`, holder = the worker's name). Every later write for a run — started,
log, exit, the stop a heartbeat hands out — is guarded by that claim (holder and epoch): a
worker that was given up on (lost, then back) finds them refused (409) and must kill what it
still runs. Interactive runs never go to a worker: apps are proxied over the controller's
loopback.
"""

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dockyard.clock import Clock
from dockyard.controller import beacon, envs, logs, nodes, placement, run_end, runlinks
from dockyard.controller.executors.base import CODE_IN_CONTAINER, ExitStatus
from dockyard.controller.lifecycle import (
    LAUNCHED,
    Claim,
    Lifecycle,
    RunCreated,
    RunRequeued,
    RunStatus,
)
from dockyard.controller.prepare import Preparer, launch_args
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Node, Run, Token, Workspace
from dockyard.errors import Conflict, DockyardError, Forbidden, InvalidInput, NotFound

log = logging.getLogger(__name__)
S = RunStatus
MAX_WAIT_S = 20.0
UNKNOWN_AFTER = timedelta(seconds=30)  # a claimed run a worker's heartbeats never listed
CLAIM_LOOKAHEAD = 32  # pending runs of the pool looked past for labels this worker lacks
OFFSET_FILE = "worker.offset"  # beside the run's log: how many bytes of the worker's log it has
_log_lock = threading.Lock()


class LogGap(Conflict):
    """A log shipment starts past what the server has: resend from `expected`."""

    def __init__(self, expected: int) -> None:
        super().__init__(
            f"this run's log is here up to byte {expected}; resend from there", code="log_gap"
        )
        self.expected = expected


# pure rules -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stop:
    run_id: str
    signal: str  # TERM | KILL
    reason: str
    record: bool  # the SIGTERM is new: the grace runs from now (`lifecycle.signalled`)


def stop_for(
    run_id: str,
    status: str,
    stop_reason: str | None,
    stop_requested_at: datetime | None,
    deadline_at: datetime | None,
    grace_s: float,
    now: datetime,
) -> Stop | None:
    """What a worker must do to a run it holds: SIGTERM when it is cancelling or past its
    deadline, SIGKILL once the grace after that SIGTERM is over, else nothing."""
    if stop_requested_at is None:
        if status == S.CANCELLING:
            return Stop(run_id, "TERM", stop_reason or "cancel", True)
        if deadline_at is not None and now >= deadline_at:
            return Stop(run_id, "TERM", "timeout", True)
        return None
    if now >= stop_requested_at + timedelta(seconds=grace_s):
        return Stop(run_id, "KILL", stop_reason or "cancel", False)
    return None


def unknown(held: Sequence[Run], reported: set[str], now: datetime) -> list[Run]:
    """The held runs a worker's heartbeat leaves out although they were claimed more than
    `UNKNOWN_AFTER` ago (its heartbeats list every run it knows from the moment it gets one)."""
    return [
        run
        for run in held
        if run.id not in reported
        and run.claimed_at is not None
        and now - run.claimed_at > UNKNOWN_AFTER
    ]


def new_part(expected: int, offset: int, data: bytes) -> bytes:
    """The bytes of a log shipment the server does not have yet (empty: a resend of bytes it
    has). LogGap when the shipment starts past `expected`."""
    if offset > expected:
        raise LogGap(expected)
    return data[expected - offset :]


# the service ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    pool: str
    labels: dict[str, str]
    executor: str
    slots: int
    host: str
    pid: int


class WorkerSide:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        lifecycle: Lifecycle,
        preparer: Preparer,
        beacon_secret: bytes,
        base_url: str,
        db_clock: bool = False,
    ) -> None:
        self.db = db
        self.db_clock = db_clock  # heartbeats stamped by the database's clock, as controllers
        self.clock = clock
        self.lifecycle = lifecycle
        self.preparer = preparer
        self.beacon_secret = beacon_secret
        self.base_url = base_url
        self._changed = threading.Lock()  # guards the generation and the waiters
        self._generation = 0
        # claims waiting on an event loop: each is settled by the next `wake`
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        # worker name → the token it is registered with (read through on a miss or mismatch)
        self._owners: dict[str, int | None] = {}
        self._owners_lock = threading.Lock()
        lifecycle.events.subscribe(RunCreated, self._created)
        lifecycle.events.subscribe(RunRequeued, lambda _event: self.wake())

    def _created(self, event: RunCreated) -> None:
        if event.batch and event.status is S.PENDING:  # apps and skipped runs are not ours
            self.wake()

    def wake(self) -> None:
        """A run may be waiting: long polls try to claim again."""
        with self._changed:
            self._generation += 1
            waiting = list(self._waiters)
        for loop, waiter in waiting:
            try:
                loop.call_soon_threadsafe(_settle, waiter)
            except RuntimeError:  # that loop has closed (the server is stopping)
                continue

    # nodes --------------------------------------------------------------------------------
    def register(self, who: Registration, token_id: int) -> dict[str, Any]:
        """Register (or take over) worker `who.name` for the worker token `token_id`: a name
        another worker token holds is refused while that token is valid."""
        nodes.check_name(who.name)
        with self.db.session() as session:
            row = session.scalar(select(Node).where(Node.name == who.name))
            if row is not None and row.kind == "worker" and row.token_id not in (None, token_id):
                holder = session.get(Token, row.token_id)
                if holder is not None and _valid(holder, self.clock.now()):
                    raise Conflict(
                        f"worker name {who.name} belongs to another worker token"
                        f" ({holder.name!r}): give this worker another --name, or revoke"
                        " that token first",
                        code="name_taken",
                    )
        identity = nodes.Identity(
            who.name,
            "worker",
            who.pool,
            dict(who.labels),
            who.slots,
            who.host,
            who.pid,
            token_id,
        )
        membership = nodes.Membership(self.db, self.clock, identity, db_clock=self.db_clock)
        membership.join()
        with self._owners_lock:
            self._owners[who.name] = token_id
        log.info(
            "worker registered",
            extra={"action": "worker_join", "node": who.name, "executor": who.executor},
        )
        return {"incarnation": membership.incarnation, "heartbeat_s": nodes.HEARTBEAT_S}

    def leave(self, name: str, incarnation: int, token_id: int) -> dict[str, Any]:
        """A clean stop (SIGTERM to `dockyard worker`): listed `stopped`. The runs it still
        holds keep their claim: a restart adopts them, else they end once its heartbeat is
        old, as for any node (`nodes.lost_reason`: "worker W stopped …")."""
        with self.db.session() as session:
            _owned(_current(session, name, incarnation), token_id)
            session.execute(
                update(Node)
                .where(Node.name == name, Node.kind == "worker", Node.incarnation == incarnation)
                .values(state=nodes.STOPPED)
            )
        log.info("worker stopped", extra={"action": "worker_leave", "node": name})
        return {"name": name, "state": nodes.STOPPED}

    def heartbeat(
        self, name: str, incarnation: int, running: Sequence[tuple[str, int]], token_id: int
    ) -> dict[str, Any]:
        with self.db.session() as session:
            now = nodes.database_now(session) if self.db_clock else self.clock.now()
            _owned(_current(session, name, incarnation), token_id)
            if not nodes.beat(session, name, incarnation, now):
                raise _stale(name)
            held = list(
                session.scalars(
                    select(Run).where(Run.holder == name, Run.status.in_(list(LAUNCHED)))
                )
            )
            epochs = {run.id: run.claim_epoch for run in held}
            stops = [s for s in (_stop_of(run, now) for run in held) if s is not None]
            for stop in stops:
                if stop.record:
                    claim = Claim(name, epochs[stop.run_id])
                    self.lifecycle.signalled(session, stop.run_id, stop.reason, now, claim)
        for stop in stops:
            if stop.record:
                logs.system(
                    self.preparer.run_dir(stop.run_id),
                    f"stopping ({stop.reason}): SIGTERM on worker {name}, SIGKILL after the"
                    " grace period",
                )
        given_up = [rid for rid, epoch in running if epochs.get(rid) != epoch]
        self._end_unknown(name, held, {rid for rid, _ in running}, now)
        return {
            "stop": [{"run_id": s.run_id, "signal": s.signal, "reason": s.reason} for s in stops],
            "given_up": given_up,
        }

    def _end_unknown(self, name: str, held: list[Run], reported: set[str], now: datetime) -> None:
        """Runs this worker holds but has not reported for `UNKNOWN_AFTER` since their claim
        (the claim's answer never reached it, or it lost its data dir) end `failed`: never
        requeued, as a process of theirs may exist somewhere."""
        for run in unknown(held, reported, now):
            reason = f"worker {name} does not know this run (its claim never reached it)"
            claim = Claim(name, run.claim_epoch)
            ended = run_end.end(
                self.db, self.lifecycle, now, run.id, list(LAUNCHED), S.FAILED,
                lost=True, claim=claim, reason=reason,
            )  # fmt: skip
            if ended:
                logs.system(self.preparer.run_dir(run.id), f"run failed: {reason}")

    def check_owner(self, name: str, token_id: int) -> None:
        """Only the worker token a worker registered with acts for it (Forbidden otherwise);
        the binding is read from the database on a miss or a mismatch, so a name taken over
        by another token (the first one revoked) on another controller is seen here."""
        with self._owners_lock:
            known = self._owners.get(name, -1)
        if known == token_id:
            return
        with self.db.session() as session:
            row = session.scalar(select(Node).where(Node.name == name, Node.kind == "worker"))
            if row is None:
                raise NotFound(f"no worker {name!r} is registered; start `dockyard worker` again")
            with self._owners_lock:
                self._owners[name] = row.token_id
            _owned(row, token_id)

    # claims -------------------------------------------------------------------------------
    async def claim(
        self, name: str, incarnation: int, free_slots: int, wait_s: float, token_id: int
    ) -> list[dict[str, Any]]:
        """Up to `free_slots` pending batch runs for this worker, at once when there are
        some, else as soon as one is created or requeued, at most `wait_s` later. Waiting
        holds no thread (only the database work runs in one), so a server keeps answering
        whatever number of workers wait on it."""
        deadline = time.monotonic() + max(0.0, min(wait_s, MAX_WAIT_S))
        while True:
            with self._changed:
                seen = self._generation
            claimed, tried = await anyio.to_thread.run_sync(
                self._claim_once, name, incarnation, free_slots, token_id
            )
            if tried:
                return claimed
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            await self._changed_since(seen, min(left, 1.0))

    async def _changed_since(self, seen: int, timeout_s: float) -> None:
        """Return once `wake` has been called since generation `seen`, or after `timeout_s`.
        `wake` runs on any thread: it settles each waiter on its own event loop."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter)
        with self._changed:
            if self._generation != seen:
                return
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._changed:
                self._waiters.discard(entry)

    def _claim_once(
        self, name: str, incarnation: int, free_slots: int, token_id: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One transaction: the worker's next pending runs (its pool in SQL, its labels
        here: a bounded look past runs needing labels it lacks), each described and claimed
        by one guarded write. Returns the assignments and whether any run was claimed (one
        that could not be described fails with the reason instead of being handed out)."""
        now = self.clock.now()
        given: list[tuple[str, dict[str, Any], str | None]] = []
        failed: list[tuple[str, Claim, str]] = []
        with self.db.session() as session:
            node = _owned(_current(session, name, incarnation), token_id)
            if free_slots <= 0:
                return [], False
            picked = _lock_takeable(session, node, free_slots)
            for run, job, ws in picked:
                try:
                    assignment = self._describe(session, run, job, ws)
                except DockyardError as exc:
                    claim = self.lifecycle.claim(session, run.id, now, name)
                    if claim is not None:
                        failed.append((run.id, claim, exc.message))
                    continue
                claim = self.lifecycle.claim(
                    session,
                    run.id,
                    now,
                    name,
                    entry_point=assignment["entry_point"],
                    env_hash=assignment.pop("env_hash"),
                )
                if claim is not None:
                    assignment["epoch"] = claim.epoch
                    given.append((run.id, assignment, self.lifecycle.placement_note(job)))
        for run_id, _, note in given:
            run_dir = self.preparer.run_dir(run_id)
            logs.system(run_dir, f"claimed by worker {name}")
            if note:
                logs.system(run_dir, note)
            log.info("run claimed", extra={"action": "worker_claim", "run_id": run_id})
        for run_id, claim, reason in failed:
            self._fail_before_start(run_id, claim, reason)
        return [assignment for _, assignment, _ in given], bool(given or failed)

    def _fail_before_start(self, run_id: str, claim: Claim, reason: str) -> None:
        """A claimed run that cannot be described (no requirements, a bad definition) fails
        with the reason; it is never handed out."""
        logs.system(self.preparer.run_dir(run_id), f"run failed before start: {reason}")
        run_end.end(
            self.db,
            self.lifecycle,
            self.clock.now(),
            run_id,
            [S.STARTING, S.CANCELLING],
            S.FAILED,
            claim=claim,
            reason=reason,
        )

    def _describe(self, session: Session, run: Run, job: Job, ws: Workspace) -> dict[str, Any]:
        """What the worker needs to start the run (`epoch` is added once it is claimed;
        `env_hash` goes to the run row, not to the worker)."""
        if run.deployment_version is None:
            raise DockyardError("the run has no deployment version")
        upstream = runlinks.upstream_of(session, run, ws.name)
        requirements = self.preparer.requirements(ws, run.deployment_version)
        entry_point = self.preparer.entry_point(job, run, requirements, upstream)
        spec = envs.env_spec(requirements, job.definition)
        profile = run.profile or "prod"
        extra = upstream.environment(self.base_url) if upstream else {}
        return {
            "run_id": run.id,
            "epoch": 0,
            "env_hash": spec.key,
            "workspace": ws.name,
            "sha": run.deployment_version,
            "git_path": f"/git/{ws.name}.git",
            "launcher": str(job.definition["entry_point"]["launcher"]),
            "launch_args": launch_args(run, entry_point),
            "entry_point": entry_point,
            "profile": profile,
            "environment": {
                **extra,
                "WORKSPACE__PROFILE": profile,
                "DOCKYARD_RUN_ID": run.id,
                "DOCKYARD_WORKSPACE": ws.name,
            },
            "requirements": requirements,
            "definition": job.definition,
            "instance": dict((job.definition.get("require") or {}).get("instance") or {}),
            "timeout_s": run.timeout_s,
            "grace_s": run.grace_s,
            "beacon_token": beacon.token_for(self.beacon_secret, run.id),
            "labels": {
                "dockyard.workspace": ws.name,
                "dockyard.job_ref": job.job_ref,
                "dockyard.run_id": run.id,
                "dockyard.deployment": run.deployment_version,
            },
        }

    # one run ------------------------------------------------------------------------------
    def config(self, name: str, run_id: str, epoch: int, token_id: int) -> dict[str, Any]:
        """The run's decrypted configuration, for its holder at that epoch while it starts or
        runs (base64 per file; never logged, never stored here)."""
        self.check_owner(name, token_id)
        with self.db.session() as session:
            run, _job, ws = _run_job_ws(session, run_id)
            _check_held(run, Claim(name, epoch))
            files = self.preparer.worker_configuration(ws, run.configuration_version)
        return {"files": {n: base64.b64encode(d).decode() for n, d in files.items()}}

    def started(self, name: str, run_id: str, epoch: int, token_id: int) -> dict[str, Any]:
        self.check_owner(name, token_id)
        claim = Claim(name, epoch)
        with self.db.session() as session:
            run = _run(session, run_id)
            _check_held(run, claim)
            if not self.lifecycle.mark_running(session, run, self.clock.now(), claim):
                raise _not_held(run_id, claim)
        logs.system(self.preparer.run_dir(run_id), f"started on worker {name}")
        return {"run_id": run_id, "status": "running"}

    def ship_log(
        self, name: str, run_id: str, epoch: int, offset: int, data: bytes, token_id: int
    ) -> int:
        """Append the worker's log bytes from `offset` (complete lines) to the run's log
        once; returns the offset the server has now."""
        self.check_owner(name, token_id)
        if data and not data.endswith(b"\n"):
            raise InvalidInput("a log shipment must end at a line's end; send complete lines")
        logs.check_lines(data)
        with self.db.session() as session:
            _check_held(_run(session, run_id), Claim(name, epoch))
        run_dir = self.preparer.run_dir(run_id)
        with _log_lock:
            expected = _read_offset(run_dir)
            part = new_part(expected, offset, data)
            if part:
                logs.append_lines(run_dir, part)
                expected += len(part)
                _write_offset(run_dir, expected)
        return expected

    def exit(
        self,
        name: str,
        run_id: str,
        epoch: int,
        status: ExitStatus,
        roots: Sequence[str],
        token_id: int,
    ) -> dict[str, Any]:
        """End the run as the embedded runner would (`run_end.finish`): 409 when it is no
        longer this worker's at that epoch (given up on while the worker was away)."""
        self.check_owner(name, token_id)
        claim = Claim(name, epoch)
        with self.db.session() as session:
            run = _run(session, run_id)
            _check_held(run, claim)
            session.expunge(run)
        ended = run_end.finish(
            self.db,
            self.lifecycle,
            self.clock.now(),
            run,
            status,
            self.preparer.run_dir(run_id),
            [CODE_IN_CONTAINER, *roots],
            claim,
        )
        if ended is None:
            raise _not_held(run_id, claim)
        log.info("run finished", extra={"action": "worker_exit", "run_id": run_id})
        return {"run_id": run_id, "status": ended.value}


def _stop_of(run: Run, now: datetime) -> Stop | None:
    return stop_for(
        run.id,
        run.status,
        run.stop_reason,
        run.stop_requested_at,
        run.deadline_at,
        run.grace_s,
        now,
    )


def _current(session: Session, name: str, incarnation: int) -> Node:
    row = session.scalar(select(Node).where(Node.name == name, Node.kind == "worker"))
    if row is None:
        raise NotFound(f"no worker {name!r} is registered; start `dockyard worker` again")
    if row.incarnation != incarnation:
        raise _stale(name)
    return row


def _settle(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


def _owned(row: Node, token_id: int) -> Node:
    """`row` if `token_id` may act for it: the token it registered with (or any worker token
    for a row registered before names were bound to tokens)."""
    if row.token_id is not None and row.token_id != token_id:
        raise Forbidden(
            f"worker {row.name} is registered with another worker token: this token may not"
            " act for it (give this worker its own --name)"
        )
    return row


def _valid(token: Token, now: datetime) -> bool:
    return token.revoked_at is None and (token.expires_at is None or token.expires_at > now)


def _lock_takeable(
    session: Session, node: Node, free_slots: int
) -> list[tuple[Run, Job, Workspace]]:
    """Up to `free_slots` pending batch runs `node` may take, oldest first, locked for this
    transaction. The look past runs needing labels the node lacks reads without locking;
    only the runs taken are locked (SKIP LOCKED: rows another claim holds are passed over,
    the next free ones taken instead). Locking the whole look-ahead would hide the runs it
    does not take from every other worker until this claim commits."""
    candidates = session.execute(
        select(Run.id, Run.labels)
        .join(Job, Job.id == Run.job_id)
        .where(Run.status == S.PENDING, Run.pool == node.pool, Job.job_type == "batch")
        .order_by(Run.created_at)
        .limit(free_slots + CLAIM_LOOKAHEAD)
    ).all()
    labels, pool = node.labels or {}, node.pool or ""
    takeable = [
        run_id
        for run_id, run_labels in candidates
        if placement.may_take(node.pool, labels, pool, run_labels or {})
    ]
    if not takeable:
        return []
    rows = session.execute(
        select(Run, Job, Workspace)
        .join(Job, Job.id == Run.job_id)
        .join(Workspace, Workspace.id == Run.workspace_id)
        .where(Run.id.in_(takeable), Run.status == S.PENDING)
        .order_by(Run.created_at)
        .limit(free_slots)
        .with_for_update(skip_locked=True, of=Run)
    ).all()
    return [(run, job, ws) for run, job, ws in rows]


def _stale(name: str) -> Conflict:
    return Conflict(
        f"worker {name} was registered again by another process: this one holds nothing more;"
        " stop it (or give it another --name)",
        code="stale_incarnation",
    )


def _run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run


def _run_job_ws(session: Session, run_id: str) -> tuple[Run, Job, Workspace]:
    run = _run(session, run_id)
    job = session.get(Job, run.job_id)
    ws = session.get(Workspace, run.workspace_id)
    assert job is not None and ws is not None
    return run, job, ws


def _check_held(run: Run, claim: Claim) -> None:
    if run.holder != claim.holder or run.claim_epoch != claim.epoch:
        raise _not_held(run.id, claim)
    if run.status not in LAUNCHED:
        raise Conflict(f"run {run.id} is {run.status}: nothing more to do for it", "not_held")


def _not_held(run_id: str, claim: Claim) -> Conflict:
    return Conflict(
        f"run {run_id} is not held by {claim.holder} at epoch {claim.epoch} (given up on, or"
        " ended): kill its process and forget it",
        code="not_held",
    )


def _read_offset(run_dir: Path) -> int:
    try:
        return int((run_dir / OFFSET_FILE).read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def _write_offset(run_dir: Path, offset: int) -> None:
    tmp = run_dir / f".{OFFSET_FILE}.tmp"
    tmp.write_text(str(offset))
    tmp.replace(run_dir / OFFSET_FILE)
