"""Who did what: the actor of a change, and the append-only audit log of changes.

An `Actor` is who or what made a change: a token (its name and id), the scheduler, GitHub
(a deploy or plan from a linked repository), a follow-up, an app request, the server itself.
Its `label` is the text runs carry in `triggered_by`/`cancelled_by`.

The audit log (`audit_event`) records deploys, launches, cancels, pauses and resumes, token
creation and revocation, key rotation, workspace creation and GitHub link/unlink. `record`
adds a row in the caller's session, so the event commits with the change it describes (or
not at all). There is no update or delete of an event anywhere in the code, and retention
(`controller/retention.py`) leaves the table alone: the log is kept for the server's life.
`detail` is bounded (`bounded`) and callers put only names, counts and ids in it, never a
secret.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dockyard.clock import isoformat
from dockyard.controller.store.models import AuditEvent, Token, Workspace

TOKEN = "token"  # noqa: S105 (an actor kind, not a secret)
SCHEDULER = "scheduler"
GITHUB = "github"
SERVER = "server"
APP = "app"
FOLLOW_UP = "follow-up"

MAX_DETAIL_BYTES = 2048
MAX_TEXT = 200
MAX_PAGE = 500

ACTIONS = (
    "deploy",
    "launch",
    "cancel",
    "pause",
    "resume",
    "token.create",
    "token.revoke",
    "key.rotate",
    "workspace.create",
    "github.link",
    "github.unlink",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who or what made a change. `id` is a token's id (kept after it is revoked)."""

    kind: str
    name: str
    id: int | None = None

    @property
    def label(self) -> str:
        """`ci (token #3)`, `scheduler`, `github`, `follow-up of jobs.a.b #4`."""
        if self.kind == TOKEN:
            return f"{self.name} (token #{self.id})"
        return self.name


def named(kind: str, name: str | None = None) -> Actor:
    return Actor(kind, _clip(name or kind, 128))


def token(session: Session, token_id: int) -> Actor:
    """The token `token_id` as an actor (its name as stored; `token #N` if it is gone)."""
    row = session.get(Token, token_id)
    return Actor(TOKEN, _clip(row.name if row else f"token {token_id}", 128), token_id)


def follow_up(upstream_ref: str, number: int) -> Actor:
    return named(FOLLOW_UP, f"follow-up of {upstream_ref} #{number}")


def record(
    session: Session,
    actor: Actor,
    action: str,
    now: datetime,
    ws: Workspace | None = None,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits with the change)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(
        at=now,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_name=_clip(actor.name, 128),
        workspace_id=ws.id if ws else None,
        workspace=ws.name if ws else None,
        action=action,
        target=_clip(target, 255) if target else None,
        detail=bounded(detail) if detail else None,
    )
    session.add(event)
    return event


def bounded(detail: Mapping[str, Any]) -> dict[str, Any]:
    """At most 20 keys of scalars or short lists, strings clipped, ≤ MAX_DETAIL_BYTES."""
    kept: dict[str, Any] = {}
    for key, value in list(detail.items())[:20]:
        kept[_clip(str(key), 64)] = _value(value)
    if len(json.dumps(kept, default=str)) > MAX_DETAIL_BYTES:
        return {"truncated": True}
    return kept


def _value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_value(v) for v in value[:20]]
    return _clip(str(value), MAX_TEXT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def page(
    session: Session,
    workspace_ids: Sequence[int] | None,
    before: int | None = None,
    limit: int = 100,
    server_wide: bool = True,
) -> list[AuditEvent]:
    """Newest first, keyset-paged on the id (`before`: the last id of the previous page).
    `workspace_ids` None: every workspace; `server_wide`: include events of no workspace."""
    query = select(AuditEvent)
    if workspace_ids is not None:
        scope = AuditEvent.workspace_id.in_(list(workspace_ids))
        query = query.where(or_(scope, AuditEvent.workspace_id.is_(None)) if server_wide else scope)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    limit = max(1, min(limit, MAX_PAGE))
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


def as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": isoformat(event.at),
        "actor": {"kind": event.actor_kind, "id": event.actor_id, "name": event.actor_name},
        "actor_label": Actor(event.actor_kind, event.actor_name, event.actor_id).label,
        "workspace": event.workspace,
        "action": event.action,
        "target": event.target,
        "detail": event.detail or {},
    }
