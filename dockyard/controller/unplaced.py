"""Runs nobody can take: a pending batch run whose pool and labels no live node serves for
`DOCKYARD_PLACEMENT_WAIT_S` ends `failed`, the reason saying what it needs and who is there
("no worker can take it: it needs pool 'big' with labels region=eu; live workers: w1 (pool
default)"), instead of waiting for the pending bound.

Live nodes are those heartbeating (`nodes.LOST_AFTER`): workers with their pool and labels, and
controllers whose own runner takes batch runs (they register in the default pool without
labels). Each end is the lifecycle's guarded end from `pending`, so when several controllers
judge together it happens once. Run by every controller's heartbeat loop, once it may judge.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.controller import logs, nodes, placement, run_end, slots
from dockyard.controller.lifecycle import LAUNCHED, Lifecycle, RunStatus
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Node, Run

log = logging.getLogger(__name__)
S = RunStatus
SWEEP_MAX = 500  # pending runs looked at per pool kind and round
NAMED_MAX = 10  # live nodes a reason names


@dataclass(frozen=True, slots=True)
class Live:
    name: str
    kind: str
    pool: str
    labels: Mapping[str, Any]
    slots: int | None = None  # batch runs it takes at once (None: no limit)


def takers(run_pool: str, run_labels: Mapping[str, Any], live: Sequence[Live]) -> list[Live]:
    return [n for n in live if placement.may_take(n.pool, n.labels, run_pool, run_labels)]


def reason(run_pool: str, run_labels: Mapping[str, Any], live: Sequence[Live]) -> str:
    """Why a run waits for nobody: what it needs, and the live nodes there are."""
    named = [_node_text(n) for n in live[:NAMED_MAX]]
    if len(live) > NAMED_MAX:
        named.append(f"and {len(live) - NAMED_MAX} more")
    return (
        f"no worker can take it: it needs {placement.describe(run_pool, run_labels)};"
        f" live workers: {', '.join(named) or 'none'}"
    )


def waiting_hint(
    session: Session,
    run: Run,
    job_type: str,
    now: datetime,
    weights: Mapping[str, int] | None = None,
) -> str | None:
    """For a pending batch run: what it waits for, when no live node may take it (yet), or
    when every slot of the nodes that may is in use (controller/slots.py)."""
    if run.status != S.PENDING or job_type != "batch":
        return None
    return pool_hint(session, run.pool, dict(run.labels or {}), now, weights)


def pool_hint(
    session: Session,
    pool: str,
    labels: Mapping[str, Any],
    now: datetime,
    weights: Mapping[str, int] | None = None,
) -> str | None:
    """Why a batch run of this pool and labels would wait now (None: it would start).
    `weights` (`DOCKYARD_SLOT_WEIGHTS`, this server's) count what a controller's runs take;
    a worker counts its runs."""
    live = live_nodes(session, now)
    able = takers(pool, labels, live)
    if not able:
        return reason(pool, labels, live).replace(
            "no worker can take it", "no live worker can take it yet", 1
        )
    if any(n.slots is None for n in able):
        return None  # a node without a limit takes it at its next claim
    in_use = _slots_held(session, able, weights or {})
    total = sum(n.slots or 0 for n in able)
    return slots.waiting_text(in_use, total) if in_use >= total else None


def _slots_held(session: Session, able: Sequence[Live], weights: Mapping[str, int]) -> int:
    """The slots the batch runs these nodes hold take (a weighted run counts its weight on
    a controller, as its runner counts it)."""
    nodes_by_name = {n.name: n for n in able}
    held = session.execute(
        select(Run.holder, Job.definition)
        .join(Job, Job.id == Run.job_id)
        .where(
            Run.holder.in_(list(nodes_by_name)),
            Run.status.in_(LAUNCHED),
            Job.job_type == "batch",
        )
    )
    total = 0
    for holder, definition in held:
        node = nodes_by_name[holder]
        counted = weights if node.kind == "controller" else {}
        total += slots.weight(definition, counted, node.slots or 1)
    return total


def _node_text(node: Live) -> str:
    parts = [f"pool {node.pool}"] + [f"{k}={v}" for k, v in sorted(node.labels.items())]
    if node.kind != "worker":
        parts.insert(0, node.kind)
    return f"{node.name} ({', '.join(parts)})"


def live_nodes(session: Session, now: datetime) -> list[Live]:
    rows = session.scalars(
        select(Node)
        .where(
            Node.state == nodes.UP,
            Node.pool.is_not(None),
            Node.last_heartbeat_at > now - nodes.LOST_AFTER,
        )
        .order_by(Node.kind.desc(), Node.name)
    )
    return [Live(n.name, n.kind, n.pool or "", dict(n.labels or {}), n.slots) for n in rows]


def waiting(session: Session, before: datetime, live: Sequence[Live]) -> list[tuple[str, str, Any]]:
    """Pending batch runs created before `before` that no live node may take: those of pools
    nobody serves (SQL), then those of served pools whose labels nobody has (here)."""
    base = (
        select(Run.id, Run.pool, Run.labels)
        .join(Job, Job.id == Run.job_id)
        .where(Run.status == S.PENDING, Job.job_type == "batch", Run.created_at < before)
        .order_by(Run.created_at)
        .limit(SWEEP_MAX)
    )
    pools = sorted({n.pool for n in live})
    unserved = session.execute(base.where(Run.pool.not_in(pools)) if pools else base).all()
    served = session.execute(base.where(Run.pool.in_(pools))).all() if pools else []
    found = [(rid, pool, labels or {}) for rid, pool, labels in unserved]
    found += [
        (rid, pool, labels or {})
        for rid, pool, labels in served
        if labels and not takers(pool, labels, live)
    ]
    return found


def end_unplaceable(
    db: Database,
    lifecycle: Lifecycle,
    now: datetime,
    wait_s: float,
    run_dir: Callable[[str], Path],
) -> list[str]:
    """End every run nobody could take for `wait_s`, `failed` with the reason, once each."""
    with db.session() as session:
        live = live_nodes(session, now)
        found = waiting(session, now - timedelta(seconds=wait_s), live)
    ended = []
    for run_id, pool, labels in found:
        why = reason(pool, labels, live)
        if run_end.end(db, lifecycle, now, run_id, [S.PENDING], S.FAILED, reason=why):
            ended.append(run_id)
            logs.system(run_dir(run_id), f"run failed: {why}")
            log.warning(
                "run nobody can take ended",
                extra={"action": "end_unplaceable", "run_id": run_id, "reason": why},
            )
    return ended
