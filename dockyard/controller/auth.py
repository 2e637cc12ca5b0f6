"""API tokens: only their SHA-256 is stored; the clear token is shown once, at creation.

Roles: `admin` (everything, including tokens and new workspaces), `deploy` (push, trigger,
cancel), `read` (list, info, logs, clone). A token may be limited to one workspace.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import utcnow
from dockyard.controller.store.models import Token, Workspace
from dockyard.errors import Forbidden, InvalidInput, NotFound, Unauthorized

ROLES = ("read", "deploy", "admin")
TOKEN_PREFIX = "dy_"  # noqa: S105 (a prefix, not a secret)


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    role: str
    workspace_id: int | None

    def require(self, role: str, workspace_id: int | None = None) -> None:
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this token has role {self.role!r}; the action needs {role!r}")
        if self.workspace_id is not None and workspace_id != self.workspace_id:
            raise Forbidden("this token is limited to another workspace")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(session: Session, token: str | None) -> Principal:
    if not token:
        raise Unauthorized("missing token; run `dockyard login --server URL --token TOKEN`")
    digest = hash_token(token)
    row = session.scalar(select(Token).where(Token.token_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("invalid or revoked token; ask an admin for a new one")
    return Principal(row.id, row.role, row.workspace_id)


def create(
    session: Session, name: str, role: str, workspace: Workspace | None
) -> tuple[str, Token]:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    clear = new_token()
    row = Token(
        name=name,
        token_hash=hash_token(clear),
        prefix=clear[:7],
        role=role,
        workspace_id=workspace.id if workspace else None,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return clear, row


def ensure_admin(session: Session, env_token: str | None) -> str | None:
    """Make sure an admin token exists; return a newly generated one (to print once)."""
    if env_token:
        digest = hash_token(env_token)
        if session.scalar(select(Token).where(Token.token_hash == digest)) is None:
            session.add(
                Token(
                    name="admin (DOCKYARD_ADMIN_TOKEN)",
                    token_hash=digest,
                    prefix=env_token[:7],
                    role="admin",
                    created_at=utcnow(),
                )
            )
        return None
    exists = session.scalar(
        select(Token.id).where(Token.role == "admin", Token.revoked_at.is_(None)).limit(1)
    )
    if exists is not None:
        return None
    clear, _ = create(session, "admin (generated at first start)", "admin", None)
    return clear


def revoke(session: Session, token_id: int) -> Token:
    row = session.get(Token, token_id)
    if row is None:
        raise NotFound(f"no token with id {token_id}; `dockyard token list` shows them")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def as_dict(row: Token, workspace_name: str | None = None) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "role": row.role,
        "workspace": workspace_name,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }
