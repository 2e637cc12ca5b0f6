"""A run's cause and effect: what a follow-up's process is told about the upstream run it
reacts to, and the links a run's page and `job-run info` show both ways.

A `job.fail:` follow-up is there to react to a failure, so it must know which run failed and
why without a second query: its process gets the upstream's workspace, job, number, run id,
status, reason and dashboard URL as `DOCKYARD_UPSTREAM_*` variables and in dlt's run context
(`run_context["run_args"]`, which dlt's agent launcher also hands to an agent as inputs). A
re-run of a follow-up is told about the same upstream. Reads only.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.controller.store.models import Job, Run

REASON_MAX = 1000  # characters of the upstream's reason a follow-up is given
LINKS_MAX = 20  # follow-ups and re-runs listed on a run (newest first)
CHAIN_MAX = 32  # re-runs of re-runs followed back to a follow-up's upstream


@dataclass(frozen=True, slots=True)
class Upstream:
    """The run whose end started a follow-up."""

    workspace: str
    job_ref: str
    number: int
    run_id: str
    status: str
    reason: str | None

    def fields(self, base_url: str) -> dict[str, str]:
        """`workspace`, `job`, `run_number`, `run_id`, `status`, `reason`, `url`; the reason
        bounded and without NUL (an environment value cannot hold one)."""
        reason = (self.reason or "").replace("\x00", "")
        if len(reason) > REASON_MAX:
            reason = reason[: REASON_MAX - 1] + "…"
        return {
            "workspace": self.workspace,
            "job": self.job_ref,
            "run_number": str(self.number),
            "run_id": self.run_id,
            "status": self.status,
            "reason": reason,
            "url": run_url(base_url, self.workspace, self.run_id),
        }

    def environment(self, base_url: str) -> dict[str, str]:
        """`DOCKYARD_UPSTREAM_WORKSPACE`, `…_JOB`, `…_RUN_NUMBER`, `…_RUN_ID`, `…_STATUS`,
        `…_REASON`, `…_URL`."""
        return {f"DOCKYARD_UPSTREAM_{k.upper()}": v for k, v in self.fields(base_url).items()}

    def run_args(self, base_url: str) -> dict[str, Any]:
        """The same in dlt's `run_args` (`upstream_job`, `upstream_run_number` as an int, …)."""
        fields: dict[str, Any] = {f"upstream_{k}": v for k, v in self.fields(base_url).items()}
        fields["upstream_run_number"] = self.number
        return fields


def run_url(base_url: str, workspace: str, run_id: str) -> str:
    """A run's dashboard page."""
    return f"{base_url}/ui/w/{quote(workspace, safe='')}/runs/{quote(run_id, safe='')}"


def upstream_of(session: Session, run: Run, workspace: str) -> Upstream | None:
    """The upstream of a follow-up (or of a re-run of one, followed back); None for any
    other run."""
    current: Run | None = run
    for _ in range(CHAIN_MAX):
        if current is None:
            return None
        if current.cause_run_id is not None:
            return _upstream(session, current.cause_run_id, workspace)
        if current.rerun_of is None:
            return None
        current = session.get(Run, current.rerun_of)
    return None


def _upstream(session: Session, run_id: str, workspace: str) -> Upstream | None:
    cause = session.get(Run, run_id)
    if cause is None:  # removed by retention since
        return None
    job = session.get(Job, cause.job_id)
    assert job is not None
    return Upstream(workspace, job.job_ref, cause.number, cause.id, cause.status, cause.reason)


def links(session: Session, run: Run) -> dict[str, Any]:
    """`cause` (the run this follow-up reacts to), `follow_ups` (the runs its end started),
    `rerun_of` (the run this one runs again) and `reruns` (its re-runs), each as
    `{run_id, job_ref, number, status}`; lists newest first, at most `LINKS_MAX`."""
    return {
        "cause": _ref(session, run.cause_run_id),
        "follow_ups": _refs(session, Run.cause_run_id == run.id),
        "rerun_of": _ref(session, run.rerun_of),
        "reruns": _refs(session, Run.rerun_of == run.id),
    }


def _ref(session: Session, run_id: str | None) -> dict[str, Any] | None:
    if run_id is None:
        return None
    row = session.execute(
        select(Run.id, Job.job_ref, Run.number, Run.status)
        .join(Job, Job.id == Run.job_id)
        .where(Run.id == run_id)
    ).first()
    return None if row is None else _as_ref(row)


def _refs(session: Session, condition: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Run.id, Job.job_ref, Run.number, Run.status)
        .join(Job, Job.id == Run.job_id)
        .where(condition)
        .order_by(Run.created_at.desc(), Run.id)
        .limit(LINKS_MAX)
    )
    return [_as_ref(row) for row in rows]


def _as_ref(row: Any) -> dict[str, Any]:
    return {"run_id": row[0], "job_ref": row[1], "number": row[2], "status": row[3]}
