"""API tokens: only their SHA-256 is stored; the clear token is shown once, at creation.

Roles: `admin` (everything, including tokens and new workspaces), `deploy` (push, trigger,
cancel), `read` (list, info, logs, clone). A token may be limited to one workspace.
`worker` is outside that ladder: a `dockyard worker` host's token may call only
`/api/v1/worker/*` and fetch workspace code over git (never push, never any other endpoint).

`DOCKYARD_ADMIN_TOKEN` is stored like any token, marked as coming from the environment; the
server starting with another value revokes the one it replaces, so changing the variable is
how an operator rotates a leaked admin token.

A token may carry an expiry (`expires_at`): the deploy tokens a GitHub Actions job gets for its
OIDC token (`controller/github_oidc.py`) live for minutes, and are refused from then on like
revoked ones.
"""

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import utcnow
from dockyard.controller.store.models import Token, Workspace
from dockyard.errors import Forbidden, InvalidInput, NotFound, Unauthorized

log = logging.getLogger(__name__)
ROLES = ("read", "deploy", "admin")
WORKER = "worker"
TOKEN_ROLES = (*ROLES, WORKER)
WORKER_ONLY = (
    "a worker token may only call /api/v1/worker/* and fetch code; use a read, deploy or"
    " admin token for this"
)
TOKEN_PREFIX = "dy_"  # noqa: S105 (a prefix, not a secret)
DLTHUB_PREFIX = "dlt_sa_"
"""A key for the stock `dlthub` CLI, which refuses keys without it (a workspace service
account's prefix there; here an ordinary token: roles, workspace limit, revocation)."""
FROM_ENV = "env"
FROM_GITHUB_OIDC = "github-oidc"
TOKEN_EXPIRED = "token_expired"  # noqa: S105 (an error code, not a secret)
"""An `Unauthorized`: the token's lifetime is over (a GitHub Actions deploy token)."""
ENV_TOKEN_NAME = "admin (DOCKYARD_ADMIN_TOKEN)"  # noqa: S105 (a name, not a secret)


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    role: str
    workspace_id: int | None

    def require(self, role: str, workspace_id: int | None = None) -> None:
        if self.role == WORKER:
            raise Forbidden(WORKER_ONLY)
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this token has role {self.role!r}; the action needs {role!r}")
        if self.workspace_id is not None and workspace_id != self.workspace_id:
            raise Forbidden("this token is limited to another workspace")

    def require_worker(self) -> None:
        """The `/api/v1/worker/*` endpoints: worker tokens only."""
        if self.role != WORKER:
            raise Forbidden(
                f"this token has role {self.role!r}; the worker API needs a worker token"
                " (`dockyard token create NAME --role worker`)"
            )


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(session: Session, token: str | None, now: datetime | None = None) -> Principal:
    if not token:
        raise Unauthorized("missing token; run `dockyard login --server URL --token TOKEN`")
    digest = hash_token(token)
    row = session.scalar(select(Token).where(Token.token_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized("invalid or revoked token; ask an admin for a new one")
    if row.expires_at is not None and row.expires_at <= (now or utcnow()):
        raise Unauthorized(
            f"token expired at {row.expires_at.isoformat()}; get a new one"
            " (in GitHub Actions: `dockyard login --github-oidc`)",
            code=TOKEN_EXPIRED,
        )
    return Principal(row.id, row.role, row.workspace_id)


def create(
    session: Session,
    name: str,
    role: str,
    workspace: Workspace | None,
    expires_at: datetime | None = None,
    source: str | None = None,
    now: datetime | None = None,
    prefix: str = TOKEN_PREFIX,
) -> tuple[str, Token]:
    if role not in TOKEN_ROLES:
        raise InvalidInput(f"unknown role {role!r}; use one of {', '.join(TOKEN_ROLES)}")
    if role == WORKER and workspace is not None:
        raise InvalidInput("a worker token serves every workspace: leave out --workspace")
    clear = new_token(prefix)
    row = Token(
        name=name,
        token_hash=hash_token(clear),
        prefix=clear[: len(prefix) + 4],
        role=role,
        workspace_id=workspace.id if workspace else None,
        created_at=now or utcnow(),
        expires_at=expires_at,
        source=source,
    )
    session.add(row)
    session.flush()
    return clear, row


def ensure_admin(session: Session, env_token: str | None) -> str | None:
    """Make sure an admin token exists; return a newly generated one (to print once).

    With `env_token` (DOCKYARD_ADMIN_TOKEN), that token is valid and every earlier one that
    came from the environment is revoked; tokens made through the API are left alone."""
    if env_token:
        _from_env(session, env_token)
        return None
    exists = session.scalar(
        select(Token.id).where(Token.role == "admin", Token.revoked_at.is_(None)).limit(1)
    )
    if exists is not None:
        return None
    clear, _ = create(session, "admin (generated at first start)", "admin", None)
    return clear


def _from_env(session: Session, env_token: str) -> None:
    digest = hash_token(env_token)
    row = session.scalar(select(Token).where(Token.token_hash == digest))
    if row is not None and row.revoked_at is not None:
        # never revived (it was revoked for a reason), and the one it would replace stays
        # valid, so the server is not left without its admin token
        log.warning(
            "DOCKYARD_ADMIN_TOKEN names a revoked token, which stays revoked; set a new value",
            extra={"action": "rotate_admin_token", "token_id": row.id},
        )
        return
    replaced = session.scalars(
        select(Token).where(
            Token.source == FROM_ENV, Token.token_hash != digest, Token.revoked_at.is_(None)
        )
    )
    for old in replaced:
        old.revoked_at = utcnow()
        log.warning(
            "an earlier DOCKYARD_ADMIN_TOKEN was revoked: the server started with another",
            extra={"action": "rotate_admin_token", "token_id": old.id, "prefix": old.prefix},
        )
    if row is None:
        session.add(
            Token(
                name=ENV_TOKEN_NAME,
                token_hash=digest,
                prefix=env_token[:7],
                role="admin",
                created_at=utcnow(),
                source=FROM_ENV,
            )
        )


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
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }
