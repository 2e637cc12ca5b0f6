"""API tokens (admin only): mint one (its clear value is shown once), list, revoke."""

from typing import Any

from sqlalchemy import select

from dockyard.controller import audit, auth, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Token, Workspace
from dockyard.controller.usecases.access import Principal


def create_token(
    ctl: Controller,
    principal: Principal,
    name: str,
    role: str,
    workspace: str | None,
    dlthub: bool = False,
) -> dict[str, Any]:
    """A token; with `dlthub`, one the stock `dlthub` CLI accepts (`auth.DLTHUB_PREFIX`)."""
    principal.require("admin")
    prefix = auth.DLTHUB_PREFIX if dlthub else auth.TOKEN_PREFIX
    with ctl.db.session() as session:
        ws = workspaces.get(session, workspace) if workspace else None
        clear, row = auth.create(session, name, role, ws, prefix=prefix)
        detail = {"token_id": row.id, "role": role, "prefix": row.prefix}
        actor = audit.token(session, principal.token_id)
        audit.record(session, actor, "token.create", ctl.clock.now(), ws, row.name, detail)
        return {**auth.as_dict(row, workspace), "token": clear}


def list_tokens(ctl: Controller, principal: Principal) -> list[dict[str, Any]]:
    principal.require("admin")
    with ctl.db.session() as session:
        names = {w.id: w.name for w in workspaces.list_all(session)}
        rows = session.scalars(select(Token).order_by(Token.id))
        return [auth.as_dict(r, names.get(r.workspace_id or -1)) for r in rows]


def revoke_token(ctl: Controller, principal: Principal, token_id: int) -> dict[str, Any]:
    principal.require("admin")
    with ctl.db.session() as session:
        before = session.get(Token, token_id)
        already = before is not None and before.revoked_at is not None
        row = auth.revoke(session, token_id)
        if already:  # revoking twice changes nothing, so it is not an event
            return auth.as_dict(row)
        ws = session.get(Workspace, row.workspace_id) if row.workspace_id else None
        detail = {"token_id": row.id, "role": row.role, "prefix": row.prefix}
        actor = audit.token(session, principal.token_id)
        audit.record(session, actor, "token.revoke", ctl.clock.now(), ws, row.name, detail)
        return auth.as_dict(row)
