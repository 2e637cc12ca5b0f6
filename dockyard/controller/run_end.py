"""How a launched run ends, in one place for every holder: the embedded runner (its own
process exited) and a remote worker (`POST /api/v1/worker/runs/{id}/exit`).

The exit status, the stop that was asked for and the exception at the end of the run's
stderr decide the status and the reason (`lifecycle.outcome`, `failure.explain`); the end is
written through the lifecycle, guarded by the holder's claim, so a holder that was given up on
(lost, then back) cannot finish the run.
"""

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dockyard import crashpoints
from dockyard.controller import failure, logs
from dockyard.controller.alerts import kinds as alert_kinds
from dockyard.controller.executors.base import ExitStatus
from dockyard.controller.lifecycle import LAUNCHED, Claim, Lifecycle, RunStatus, outcome
from dockyard.controller.lifecycle import writer as lifecycle_writer
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Run


def end(
    db: Database,
    lifecycle: Lifecycle,
    now: datetime,
    run_id: str,
    expected: Sequence[RunStatus],
    status: RunStatus,
    lost: bool = False,
    claim: Claim | None = None,
    **values: Any,
) -> bool:
    """End a run through the lifecycle (interval ledger, refresh, follow-ups, alerts) in
    one transaction, from the status it is in now; False when it had already ended (or,
    with `claim`, is no longer held at that claim)."""
    with db.session() as session:
        run = session.get(Run, run_id)
        if run is None or run.status not in expected:
            return False
        follow_ups = lifecycle.end(session, run, [run.status], status, now, lost, claim, **values)
    if follow_ups is None:
        if claim is not None:
            lifecycle_writer.refused(run_id, claim, "finish")
        return False
    if follow_ups:
        crashpoints.reached("follow_up_created")  # committed with the upstream's end
    return True


def finish(
    db: Database,
    lifecycle: Lifecycle,
    now: datetime,
    run: Run,
    exit_status: ExitStatus,
    run_dir: Path,
    code_roots: Sequence[str],
    claim: Claim | None,
) -> RunStatus | None:
    """A launched run's process ended with `exit_status`: its status and reason (with the
    traceback of the exception a failed job raised, read from the end of its stderr in
    `run_dir`'s log), written once; None when it was no longer this claim's to end."""
    raised = (
        failure.explain(logs.stream_tail(run_dir, "err"), list(code_roots))
        if exit_status.returncode
        else None
    )
    status, reason = outcome(
        run.stop_reason, exit_status, run.timeout_s, raised.reason if raised else None
    )
    logs.system(run_dir, f"run {status}" + (f": {reason}" if reason else ""))
    moved = end(
        db,
        lifecycle,
        now,
        run.id,
        list(LAUNCHED),
        status,
        lost=alert_kinds.lost_exit(exit_status.error),
        claim=claim,
        reason=reason,
        exit_code=exit_status.returncode,
        signal=exit_status.signal,
        traceback=raised.traceback if raised and status is RunStatus.FAILED else None,
    )
    return status if moved else None
