"""API tokens (admin only): mint one (its clear value is shown once), list, revoke."""

from typing import Any

from sqlalchemy import select

from dockyard.controller import auth, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Token
from dockyard.controller.usecases.access import Principal


def create_token(
    ctl: Controller, principal: Principal, name: str, role: str, workspace: str | None
) -> dict[str, Any]:
    principal.require("admin")
    with ctl.db.session() as session:
        ws = workspaces.get(session, workspace) if workspace else None
        clear, row = auth.create(session, name, role, ws)
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
        return auth.as_dict(auth.revoke(session, token_id))
