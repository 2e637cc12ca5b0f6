"""The only writer of `run.status`: creation, claim, start, requeue, stop requests and the
end of a run, each a guarded UPDATE checked against the table in `status`.

Each function writes in the caller's session (one transaction with whatever else the caller
records: a schedule's tick, a cancel's audit) and publishes what happened; listeners hear it
after the commit (`events`). The end of a run carries what depends on it in the same
transaction: the interval ledger, dlt's refresh cascade and the follow-up runs.
"""

import dataclasses
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.controller import dltadapter, gitstore, placement, runtime_config
from dockyard.controller.alerts import outbox
from dockyard.controller.lifecycle import decisions, facts
from dockyard.controller.lifecycle.decisions import Creation, Request
from dockyard.controller.lifecycle.events import (
    Events,
    RunCreated,
    RunEnded,
    RunRequeued,
    StopRequested,
)
from dockyard.controller.lifecycle.status import LAUNCHED, TERMINAL, RunStatus, check, path
from dockyard.controller.store.models import IntervalWindow, Job, Run, Workspace
from dockyard.errors import Conflict

S = RunStatus
log = logging.getLogger(__name__)
DEFAULT_NODE = "local"  # the holder when no node name is given (tests driving the runner)


@dataclass(frozen=True, slots=True)
class Claim:
    """Who holds a run and at which of its claims: a holder's writes for the run match only
    while both are still the run's (a holder given up on finds them refused)."""

    holder: str
    epoch: int


def move(
    session: Session,
    run_id: str,
    sources: Collection[RunStatus],
    target: RunStatus,
    claim: Claim | None = None,
    **values: Any,
) -> bool:
    """`run_id` to `target` if it is still in one of `sources` (and, with `claim`, still held
    by that claim); False when someone moved it first. Every source must be allowed to move
    to `target` (else `IllegalMove`)."""
    check(sources, target)
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_([s.value for s in sources]), *_held(claim))
        .values(status=target.value, **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _held(claim: Claim | None) -> list[Any]:
    """The WHERE terms a holder's write adds: still its run, at the same claim."""
    if claim is None:
        return []
    return [Run.holder == claim.holder, Run.claim_epoch == claim.epoch]


def refused(run_id: str, claim: Claim, what: str) -> None:
    """A holder's write matched nothing: the run was given up on (or moved on); leave it."""
    log.warning(
        "run no longer held at this claim: left alone",
        extra={"action": what, "run_id": run_id, "holder": claim.holder, "epoch": claim.epoch},
    )


@dataclass(slots=True)
class Batch:
    """Many creations in one transaction (the scheduler's fires), read and counted at once:
    each job's active run numbers, and the number its run gets (counter bumped already)."""

    active: dict[int, tuple[int, ...]]
    numbers: dict[int, int]


class Lifecycle:
    def __init__(
        self,
        repos_dir: Path,
        defaults: runtime_config.Defaults,
        executor: str = "local",
        events: Events | None = None,
        node: str = DEFAULT_NODE,
        rules: placement.Rules | None = None,
    ) -> None:
        # where runs go (`DOCKYARD_PLACEMENT`): recorded on each run as it is created
        self.rules = rules or placement.Rules()
        self.node = node  # this process's node name: the holder of the runs it claims
        self.repos_dir = repos_dir
        self.defaults = defaults
        self.executor = executor  # the server's default; a workspace may choose another
        self.events = events or Events()
        self._config_names: dict[tuple[str, str], list[str]] = {}
        self._follower_index: dict[tuple[int, str | None], dict[str, list[int]]] = {}
        # a warm pool's take (`controller/warmpool.py`): the run id of a held process a new
        # run of the job may be, or None; set by the pool when there is one
        self.take_warm: Callable[[Workspace, Job], str | None] | None = None

    # creation ---------------------------------------------------------------------------
    def create(
        self,
        session: Session,
        ws: Workspace,
        job: Job,
        request: Request,
        now: datetime,
        batch: "Batch | None" = None,
    ) -> Run:
        """A run for `job`: `pending` (`starting` when prepared), or `skipped` with the reason
        a person can read. Raises Conflict for an archived job or an empty workspace.
        `batch`: one of many creations in this transaction, read and counted together
        (`prefetch`); the row is flushed with the others, at the latest at commit."""
        self.check_creatable(ws, job)
        known = batch.active.get(job.id) if batch is not None else None
        creation = decisions.decide(job, request, facts.read(session, ws, job, request, known), now)
        check([None], creation.status)
        where, misplaced = self.place(job)
        warm = False
        if creation.status is S.PENDING and misplaced is None and where.embedded:
            request, creation, warm = self._warm(ws, job, request, creation)
        run = self._row(session, ws, job, request, now, creation, where, batch)
        if not creation.skipped:
            self._begin(session, ws, job, run, creation, now)
        is_batch = job.job_type == "batch"
        self.events.publish(session, RunCreated(run.id, creation.status, is_batch, warm))
        if misplaced is not None and creation.status is S.PENDING:
            self.end(session, run, [S.PENDING], S.FAILED, now, reason=misplaced)
        return run

    @staticmethod
    def check_creatable(ws: Workspace, job: Job) -> None:
        """Conflict when no run of `job` can be made (archived, nothing deployed)."""
        if job.status != "active":
            raise Conflict(f"job {job.job_ref} is archived; deploy it again to run it")
        if ws.deployment_version is None:
            raise Conflict(f"workspace {ws.name} has nothing deployed yet; run `dockyard deploy`")

    def prefetch(self, session: Session, jobs: list[Job]) -> "Batch":
        """For one creation each of these jobs (distinct, each creatable) in this
        transaction: their active runs in one read, their run counters in one write."""
        ids = [job.id for job in jobs]
        return Batch(facts.active_numbers(session, ids), _next_numbers(session, ids))

    def _warm(
        self, ws: Workspace, job: Job, request: Request, creation: Creation
    ) -> tuple[Request, Creation, bool]:
        """A run that would wait for the runner takes a warm pool's held process if there
        is one for its job: it is made with that process's id, `starting`, released once
        committed (the pool listens for `RunCreated` with `warm`)."""
        if request.run_id is not None or request.prepared or self.take_warm is None:
            return request, creation, False
        run_id = self.take_warm(ws, job)
        if run_id is None:
            return request, creation, False
        request = dataclasses.replace(request, run_id=run_id, prepared=True)
        return request, dataclasses.replace(creation, status=S.STARTING), True

    def place(self, job: Job) -> tuple[placement.Placement, str | None]:
        """Where the job's runs go, and why nowhere (its requirements map to two pools).
        Interactive runs are served by a controller's proxy: never placed elsewhere."""
        if job.job_type != "batch":
            return placement.Placement(), None
        try:
            return self.rules.place(job.definition), None
        except placement.PlacementError as exc:
            return placement.Placement(), f"no worker can take it: {exc.message}"

    def placement_note(self, job: Job) -> str | None:
        """The line a run's log gets when some of its job's requirements have no rule."""
        where, _ = self.place(job)
        if not where.unmapped:
            return None
        return (
            f"placement: no rule for {', '.join(where.unmapped)} in the placement file: it may"
            " run anywhere its pool and labels allow"
        )

    def _row(
        self,
        session: Session,
        ws: Workspace,
        job: Job,
        request: Request,
        now: datetime,
        creation: Creation,
        where: placement.Placement,
        batch: "Batch | None" = None,
    ) -> Run:
        number = batch.numbers.pop(job.id, None) if batch is not None else None
        if number is None:
            number = _next_numbers(session, [job.id])[job.id]
        timeout, grace = runtime_config.timeouts(job.definition, self.defaults)
        window = creation.window
        run = Run(
            id=request.run_id or str(uuid.uuid4()),
            workspace_id=ws.id,
            job_id=job.id,
            number=number,
            trigger=request.trigger,
            status=creation.status.value,
            claimed_at=now if creation.status is S.STARTING else None,
            # prepared ahead of its tick: its held process is this node's
            holder=self.node if creation.status is S.STARTING else None,
            claim_epoch=1 if creation.status is S.STARTING else 0,
            # a held process taken (timed or warm pool) was made by this executor too
            executor=ws.executor or self.executor,
            reason=creation.reason,
            created_at=now,
            finished_at=now if creation.skipped else None,
            refresh=creation.refresh,
            profile=runtime_config.profile(job.definition, self.config_names(ws)),
            deployment_version=ws.deployment_version,
            configuration_version=ws.configuration_version,
            interval_start=window.start if window else None,
            interval_end=window.end if window else None,
            timeout_s=timeout,
            grace_s=grace,
            scheduled_for=request.scheduled_for,
            cause_run_id=request.cause_run_id,
            rerun_of=request.rerun_of,
            triggered_by=request.triggered_by,
            manual=request.manual,
            pool=where.pool,
            labels=dict(where.labels),
        )
        session.add(run)
        if batch is None or creation.record_window or creation.cascade:
            session.flush()  # its interval window and cascade refer to the row
        return run

    def _begin(
        self,
        session: Session,
        ws: Workspace,
        job: Job,
        run: Run,
        creation: Creation,
        now: datetime,
    ) -> None:
        """What starting a run changes in its job's ledger."""
        if creation.new_epoch:
            job.interval_epoch += 1  # back to interval.start; old windows stay as history
        if job.refresh_pending and run.rerun_of is None:  # a re-run leaves it to the next run
            job.refresh_pending = False
        if creation.record_window:
            assert creation.window is not None
            session.add(
                IntervalWindow(
                    job_id=job.id,
                    epoch=job.interval_epoch,
                    start=creation.window.start,
                    end=creation.window.end,
                    run_id=run.id,
                    status="running",
                )
            )
        if creation.cascade:
            _cascade(session, ws, job, now)
            job.reset_at = now

    def config_names(self, ws: Workspace) -> list[str]:
        """The configuration files at the workspace's version (what the profile depends on)."""
        sha = ws.configuration_version
        if sha is None:
            return []
        key = (ws.name, sha)
        if key not in self._config_names:
            repo = gitstore.open_repo(self.repos_dir / f"{ws.name}.git")
            self._config_names[key] = [
                p for p, _ in gitstore.iter_files(repo, sha, gitstore.CONFIG)
            ]
        return self._config_names[key]

    # the runner's moves -----------------------------------------------------------------
    def claim(
        self,
        session: Session,
        run_id: str,
        now: datetime,
        holder: str | None = None,
        **values: Any,
    ) -> Claim | None:
        """pending → starting: `holder` (this node by default) prepares it, no other can.
        The same guarded write sets the holder and counts the claim (and sets `values`);
        None when someone moved the run first."""
        holder = holder or self.node
        epoch = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == S.PENDING)
            .values(
                status=S.STARTING.value,
                claimed_at=now,
                holder=holder,
                claim_epoch=Run.claim_epoch + 1,
                **values,
            )
            .returning(Run.claim_epoch)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        return None if epoch is None else Claim(holder, epoch)

    def adopt(self, session: Session, holder: str | None = None) -> dict[str, Claim]:
        """A (re)started node takes its launched runs back, and those nobody holds (made
        before holders existed): each is claimed anew (its epoch counts up), so writes of an
        earlier incarnation under the same name are refused. Returns run id → claim."""
        holder = holder or self.node
        rows = session.execute(
            select(Run.id, Run.claim_epoch).where(
                Run.status.in_([s.value for s in LAUNCHED]),
                (Run.holder == holder) | Run.holder.is_(None),
            )
        ).all()
        adopted = {}
        for run_id, epoch in rows:
            result = session.execute(
                update(Run)
                .where(Run.id == run_id, Run.claim_epoch == epoch)
                .where((Run.holder == holder) | Run.holder.is_(None))
                .values(holder=holder, claim_epoch=epoch + 1)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                adopted[run_id] = Claim(holder, epoch + 1)
        return adopted

    def requeue(self, session: Session, run_id: str, claim: Claim | None = None) -> bool:
        """starting → pending: its process was never started (preparation cut short by a
        restart, or a prepared process that was never released); it starts the ordinary way.
        With `claim`: only while that claim still holds it (it holds nothing afterwards)."""
        moved = move(session, run_id, [S.STARTING], S.PENDING, claim, holder=None)
        if moved:
            self.events.publish(session, RunRequeued(run_id))
        elif claim is not None:
            refused(run_id, claim, "requeue")
        return moved

    def mark_running(
        self,
        session: Session,
        run: Run,
        now: datetime,
        claim: Claim | None = None,
        **values: Any,
    ) -> bool:
        """starting → running, with its start time and the deadline its timeout gives; a run
        cancelled while it was starting keeps `cancelling` and gets its start time too.
        False when neither matched (with `claim`: the run is no longer held at that claim)."""
        deadline = _deadline(session, run, now)
        moved = move(
            session,
            run.id,
            [S.STARTING],
            S.RUNNING,
            claim,
            started_at=now,
            deadline_at=deadline,
            **values,
        )
        if not moved:
            result = session.execute(
                update(Run)
                .where(Run.id == run.id, Run.status == S.CANCELLING, Run.started_at.is_(None))
                .where(*_held(claim))
                .values(started_at=now, deadline_at=deadline, **values)
            )
            moved = bool(result.rowcount)  # type: ignore[attr-defined]
        if not moved and claim is not None:
            refused(run.id, claim, "mark_running")
        return moved

    # stopping ---------------------------------------------------------------------------
    def cancel(self, session: Session, run: Run, now: datetime, by: str | None = None) -> RunStatus:
        """A pending run ends at once (its interval window released); a launched one moves to
        `cancelling` and the runner stops it (SIGTERM, SIGKILL after the grace). `by`: who
        cancelled (`audit.Actor.label`), kept on the run as `cancelled_by`."""
        return self._stop(session, run, now, "cancel", "cancelled before it started", by)

    def stop_for_shutdown(self, session: Session, run: Run, now: datetime) -> RunStatus:
        """The server is stopping and `run` is an app's: a pending one ends at once, a
        launched one moves to `cancelling` with stop reason `shutdown` (its exit then ends it
        `cancelled`, "server stopped"); one already cancelling keeps its own reason."""
        return self._stop(session, run, now, "shutdown", decisions.SERVER_STOPPED, "server")

    def _stop(
        self,
        session: Session,
        run: Run,
        now: datetime,
        stop_reason: str,
        pending_reason: str,
        by: str | None,
    ) -> RunStatus:
        """Stop `run` for `stop_reason`: pending → cancelled now (with `pending_reason`),
        starting/running → cancelling (the runner signals it); `by` is kept as
        `cancelled_by`. Returns the run's status afterwards."""
        if run.status == S.PENDING:
            self.finish(
                session,
                run,
                [S.PENDING],
                S.CANCELLED,
                now,
                reason=pending_reason,
                stop_reason=stop_reason,
                cancelled_by=by,
            )
        elif move(
            session,
            run.id,
            [S.STARTING, S.RUNNING],
            S.CANCELLING,
            stop_reason=stop_reason,
            cancelled_by=by,
        ):
            self.events.publish(session, StopRequested(run.id, stop_reason))
        session.refresh(run)
        return S(run.status)

    def stop_idle(self, session: Session, run_id: str) -> bool:
        """running → cancelling for an app nobody used within its idle window."""
        moved = move(
            session, run_id, [S.RUNNING], S.CANCELLING, stop_reason="idle", cancelled_by="idle"
        )
        if moved:
            self.events.publish(session, StopRequested(run_id, "idle"))
        return moved

    def signalled(
        self, session: Session, run_id: str, reason: str, now: datetime, claim: Claim | None = None
    ) -> None:
        """SIGTERM went out (cancel, idle, timeout): the grace period runs from now. Not a
        status change: the exit decides the status (`decisions.outcome`). A stop nobody asked
        for (the timeout) is recorded as its own `cancelled_by`."""
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status.in_([s.value for s in LAUNCHED]), *_held(claim))
            .values(
                stop_requested_at=now,
                stop_reason=reason,
                cancelled_by=func.coalesce(Run.cancelled_by, reason),
            )
        )

    # the end ----------------------------------------------------------------------------
    def finish(
        self,
        session: Session,
        run: Run,
        expected: Sequence[str],
        status: str,
        now: datetime,
        lost: bool = False,
        claim: Claim | None = None,
        **values: Any,
    ) -> list[Run]:
        """End `run` if it is still in one of `expected`; returns the follow-up runs made.
        The interval ledger, the refresh cascade, the follow-ups and the alerts' outbox rows
        are in this transaction. `lost`: the controller lost the run (its alert says so).
        `claim`: only while that claim holds it (a holder's own end)."""
        return self.end(session, run, expected, status, now, lost, claim, **values) or []

    def end(
        self,
        session: Session,
        run: Run,
        expected: Sequence[str],
        status: str,
        now: datetime,
        lost: bool = False,
        claim: Claim | None = None,
        **values: Any,
    ) -> list[Run] | None:
        """`finish`, telling apart "ended here" (the follow-ups, maybe none) from "someone
        moved it first" (None)."""
        target = S(status)
        sources = [S(e) for e in expected]
        if not move(session, run.id, sources, target, claim, finished_at=now, **values):
            return None
        outbox.record(session, run, target.value, now, values.get("reason"), lost)
        _close_window(session, run.id, target)
        job = session.get(Job, run.job_id)
        ws = session.get(Workspace, run.workspace_id)
        assert job is not None and ws is not None
        if decisions.cascades(target, run.refresh, job.definition):
            _cascade(session, ws, job, now)
        self.events.publish(session, RunEnded(run.id, target, run.holder))
        return self._follow_ups(session, ws, job, run, target, now)

    def advance(self, session: Session, run: Run, target: RunStatus, now: datetime) -> list[Run]:
        """Take `run` to `target` along the shortest legal path, each step through the
        function that owns it (tests and benchmarks put runs in a given state this way).
        Returns the follow-ups an end made."""
        made: list[Run] = []
        for step in path(S(run.status), target):
            if step is S.STARTING:
                assert self.claim(session, run.id, now)
            elif step is S.RUNNING:
                self.mark_running(session, run, now)
            elif step is S.CANCELLING:
                assert self.cancel(session, run, now) is S.CANCELLING
            elif step is S.PENDING:
                assert self.requeue(session, run.id)
            elif step in TERMINAL:
                made = self.finish(session, run, [S(run.status)], step, now)
            session.refresh(run)
        return made

    def _followers(self, session: Session, ws: Workspace) -> dict[str, list[int]]:
        """`job.success:`/`job.fail:` trigger -> the active jobs it starts, built once per
        reconciled version of the workspace (job definitions change only on reconcile)."""
        key = (ws.id, ws.reconciled_sha)
        if key not in self._follower_index:
            index: dict[str, list[int]] = {}
            for job in _active_jobs(session, ws):
                for trigger in job.definition.get("triggers") or []:
                    if str(trigger).startswith(("job.success:", "job.fail:")):
                        index.setdefault(str(trigger), []).append(job.id)
            self._follower_index = {k: v for k, v in self._follower_index.items() if k[0] != ws.id}
            self._follower_index[key] = index
        return self._follower_index[key]

    def followers_of(self, session: Session, ws: Workspace, job: Job) -> list[int]:
        """The active jobs a successful run of `job` starts (what `_follow_ups` would make):
        the warm pool warms them while `job` runs."""
        trigger = decisions.follow_up_trigger(job.job_ref, S.COMPLETED)
        return list(self._followers(session, ws).get(trigger, [])) if trigger else []

    def _follow_ups(
        self,
        session: Session,
        ws: Workspace,
        upstream: Job,
        run: Run,
        status: RunStatus,
        now: datetime,
    ) -> list[Run]:
        trigger = decisions.follow_up_trigger(upstream.job_ref, status)
        if trigger is None:
            return []
        made = []
        for job_id in self._followers(session, ws).get(trigger, []):
            job = session.get(Job, job_id)
            if job is None or job.status != "active":
                continue
            try:
                with session.begin_nested():
                    request = Request(
                        trigger,
                        cause_run_id=run.id,
                        triggered_by=f"follow-up of {upstream.job_ref} #{run.number}",
                    )
                    made.append(self.create(session, ws, job, request, now))
            except IntegrityError:
                continue  # made already (the finish is being replayed after a restart)
        return made


def _deadline(session: Session, run: Run, now: datetime) -> datetime | None:
    """When the run's timeout stops it. Apps (interactive jobs) have none: their timeout is
    an idle window, enforced by the app monitor (`controller/apps.py`)."""
    job = session.get(Job, run.job_id)
    if job is not None and job.job_type == "interactive":
        return None
    return now + timedelta(seconds=run.timeout_s)


def _active_jobs(session: Session, ws: Workspace) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.workspace_id == ws.id, Job.status == "active"))
    )


def _close_window(session: Session, run_id: str, status: RunStatus) -> None:
    if status is S.COMPLETED:
        session.execute(
            update(IntervalWindow).where(IntervalWindow.run_id == run_id).values(status="completed")
        )
    else:  # not covered: folded into the next window
        session.execute(delete(IntervalWindow).where(IntervalWindow.run_id == run_id))


def _cascade(session: Session, ws: Workspace, root: Job, now: datetime) -> None:
    """dlt's refresh cascade: every freshness-downstream job (up to a `block`) refreshes on
    its next run, and counts as not fresh for its own downstream until then."""
    jobs = {j.job_ref: j for j in _active_jobs(session, ws)}
    targets = dltadapter.cascade_targets(root.job_ref, {r: j.definition for r, j in jobs.items()})
    for ref in targets:
        jobs[ref].refresh_pending = True
        jobs[ref].reset_at = now


def _next_numbers(session: Session, job_ids: list[int]) -> dict[int, int]:
    """Each job's next run number, its counter bumped in one guarded UPDATE (two
    transactions never get the same number)."""
    if not job_ids:
        return {}
    counted = session.execute(
        update(Job)
        .where(Job.id.in_(job_ids))
        .values(runs_created=Job.runs_created + 1)
        .returning(Job.id, Job.runs_created)
        # no ORM bookkeeping: matching this UPDATE against every object in the session
        # made bulk triggers quadratic
        .execution_options(synchronize_session=False)
    )
    return {int(row[0]): int(row[1]) for row in counted}
