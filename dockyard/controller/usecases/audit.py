"""The audit log, read: newest first, keyset-paged, filtered by workspace.

Who reads what follows the other reads: an admin token reads every event; any other token
reads the events of the workspaces it may read (`access`), never the server-wide ones nor
token changes (listing tokens is an admin's). A workspace-limited token naming another
workspace is told "not found", as everywhere. There is no write here: events are recorded by
the use case of each change (`controller/audit.py`), and nothing updates or deletes them.
"""

from typing import Any

from dockyard.controller import audit, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import AuditEvent
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal

ADMIN_ONLY = ("token.create", "token.revoke")


def list_events(
    ctl: Controller,
    principal: Principal,
    workspace: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """One page: `events` (newest first) and `next_before` (pass it as `before` for the next
    page; None at the end)."""
    admin = principal.role == "admin" and principal.workspace_id is None
    with ctl.db.session() as session:
        if workspace is not None:
            ws = access.workspace(session, principal, workspace, "read")
            ids: list[int] | None = [ws.id]
        elif admin:
            ids = None
        else:
            principal.require("read", principal.workspace_id)
            ids = [
                w.id for w in workspaces.list_all(session) if principal.workspace_id in (None, w.id)
            ]
        rows = _visible(
            audit.page(session, ids, before, limit + 1, server_wide=admin and not workspace), admin
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "events": [audit.as_dict(r) for r in rows],
        "next_before": rows[-1].id if more and rows else None,
    }


def _visible(rows: list[AuditEvent], admin: bool) -> list[AuditEvent]:
    return rows if admin else [r for r in rows if r.action not in ADMIN_ONLY]
