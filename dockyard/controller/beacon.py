"""The per-run beacon: where dlt inside a run PUTs its job result, traces and state.

A run's DSN carries `<run id>.<HMAC of the run id>` under a server secret, so the server
needs no stored token to check it and a run can only ever write to itself. The DSN is in the
run's environment and may end up in its log, so it is only good while the run is: once the
run's end is recorded, its beacon takes nothing more (`check_open`). What a run may store is
capped too: each payload's size, payloads per kind, bytes in all (`Limits`).
"""

import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard import crypto
from dockyard.clock import utcnow
from dockyard.controller.createonce import create_once
from dockyard.controller.lifecycle.status import LAUNCHED
from dockyard.controller.store.models import BeaconPayload, Run
from dockyard.errors import Conflict, InvalidInput, NotFound, TooLarge, Unauthorized

KINDS = ("job_result", "trace", "state")
OPEN = LAUNCHED
"""A run's beacon takes payloads while its process may be alive: from the moment it is
started until its end is recorded (dlt sends its last trace and job result before the
process exits, so they arrive while the run is still `running` or `cancelling`)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may store: bytes per payload, payloads per kind, bytes in all."""

    max_bytes: int = 8 * 1024 * 1024
    max_payloads: int = 1000
    max_run_bytes: int = 64 * 1024 * 1024


def load_secret(path: Path) -> bytes:
    """The secret kept at `path`, made on first use. Several servers starting at once on
    one data dir agree on one: it is written aside in full, then linked into place only if
    no other got there first."""
    if not path.exists():
        create_once(path, secrets.token_bytes(32))
    return path.read_bytes()


def token_for(secret: bytes, run_id: str) -> str:
    digest = hmac.new(secret, run_id.encode(), hashlib.sha256).hexdigest()[:40]
    return f"{run_id}.{digest}"


def run_id_of(secret: bytes, token: str) -> str:
    run_id, _, _ = token.partition(".")
    if not hmac.compare_digest(token_for(secret, run_id).encode(), token.encode()):
        raise Unauthorized("invalid beacon token")
    return run_id


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise NotFound(f"unknown beacon payload {kind!r}; dlt sends {', '.join(KINDS)}")


def check_open(session: Session, run_id: str, kind: str, size: int, limits: Limits) -> Run:
    """The run, if its beacon may store one more payload of `kind` and `size` bytes; else
    the reason, as an error: the run has ended (409), or a cap would be passed (413)."""
    check_kind(kind)
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("no such run")
    if run.status not in OPEN:
        raise Conflict(
            f"run {run_id} is {run.status}; its beacon takes payloads only while it runs"
        )
    if size > limits.max_bytes:
        raise TooLarge(
            f"beacon payload of {size} bytes is over the limit of {limits.max_bytes}"
            " (DOCKYARD_BEACON_MAX_BYTES)"
        )
    count, stored = _usage(session, run_id, kind)
    if count >= limits.max_payloads:
        raise TooLarge(
            f"run {run_id} has sent {count} {kind} payloads, the most a run may"
            " (DOCKYARD_BEACON_MAX_PAYLOADS)"
        )
    if stored + size > limits.max_run_bytes:
        raise TooLarge(
            f"run {run_id} has sent {stored} bytes to its beacon; {size} more would pass the"
            f" limit of {limits.max_run_bytes} (DOCKYARD_BEACON_MAX_RUN_BYTES)"
        )
    return run


def _usage(session: Session, run_id: str, kind: str) -> tuple[int, int]:
    """Payloads of `kind` and bytes of all kinds the run has stored."""
    rows = session.execute(
        select(BeaconPayload.kind, func.count(), func.coalesce(func.sum(BeaconPayload.size), 0))
        .where(BeaconPayload.run_id == run_id)
        .group_by(BeaconPayload.kind)
    ).all()
    count = sum(int(n) for k, n, _ in rows if k == kind)
    return count, sum(int(b) for _, _, b in rows)


def record(
    session: Session,
    run_id: str,
    kind: str,
    body: Any,
    secrets: Collection[str] = (),
    size: int = 0,
) -> None:
    """Store what dlt sent, every secret value of the run replaced by `***` first."""
    check_kind(kind)
    if not isinstance(body, dict):
        raise InvalidInput("beacon payload must be a JSON object")
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("no such run")
    body = _redacted(body, secrets) if secrets else body
    session.add(BeaconPayload(run_id=run_id, kind=kind, received_at=utcnow(), body=body, size=size))
    if kind == "job_result":
        run.result = body


def _redacted(value: Any, secrets: Collection[str]) -> Any:
    if isinstance(value, str):
        return crypto.redact(value, secrets)
    if isinstance(value, dict):
        return {_redacted(k, secrets): _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secrets) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "***" if str(value) in secrets else value
    return value


def payloads(session: Session, run_id: str, kind: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(BeaconPayload)
        .where(BeaconPayload.run_id == run_id, BeaconPayload.kind == kind)
        .order_by(BeaconPayload.id)
    )
    return [dict(r.body) for r in rows]


def load_summary(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per pipeline run: destination, dataset and rows per table (dlt's trace)."""
    return [_summarize(trace) for trace in traces]


def _summarize(trace: dict[str, Any]) -> dict[str, Any]:
    steps = {s.get("step"): s for s in trace.get("steps", []) if isinstance(s, dict)}
    normalize = (steps.get("normalize") or {}).get("normalize_info") or {}
    load = (steps.get("load") or {}).get("load_info") or {}
    tables: dict[str, int] = {}
    for metric in normalize.get("table_metrics") or []:
        name = metric.get("table_name")
        if name:
            tables[name] = tables.get(name, 0) + int(metric.get("items_count") or 0)
    failed = [s["step"] for s in steps.values() if s.get("step_exception")]
    return {
        "pipeline": trace.get("pipeline_name"),
        "destination": load.get("destination_name"),
        "dataset": load.get("dataset_name"),
        "tables": tables,
        "failed_steps": failed,
        "finished_at": trace.get("finished_at"),
    }
