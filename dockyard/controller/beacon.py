"""The per-run beacon: where dlt inside a run PUTs its job result, traces and state.

A run's DSN carries `<run id>.<HMAC of the run id>` under a server secret, so the server
needs no stored token to check it and a run can only ever write to itself.
"""

import hashlib
import hmac
import secrets
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import crypto
from dockyard.clock import utcnow
from dockyard.controller.store.models import BeaconPayload, Run
from dockyard.errors import InvalidInput, NotFound, Unauthorized

KINDS = ("job_result", "trace", "state")
TERMINAL = ("completed", "failed", "cancelled", "skipped")


def load_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def token_for(secret: bytes, run_id: str) -> str:
    digest = hmac.new(secret, run_id.encode(), hashlib.sha256).hexdigest()[:40]
    return f"{run_id}.{digest}"


def run_id_of(secret: bytes, token: str) -> str:
    run_id, _, _ = token.partition(".")
    if not hmac.compare_digest(token_for(secret, run_id).encode(), token.encode()):
        raise Unauthorized("invalid beacon token")
    return run_id


def record(
    session: Session, run_id: str, kind: str, body: Any, secrets: Collection[str] = ()
) -> None:
    """Store what dlt sent, every secret value of the run replaced by `***` first."""
    if kind not in KINDS:
        raise NotFound(f"unknown beacon payload {kind!r}; dlt sends {', '.join(KINDS)}")
    if not isinstance(body, dict):
        raise InvalidInput("beacon payload must be a JSON object")
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("no such run")
    body = _redacted(body, secrets) if secrets else body
    session.add(BeaconPayload(run_id=run_id, kind=kind, received_at=utcnow(), body=body))
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
