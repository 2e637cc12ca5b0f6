"""Public links: a revocable, unguessable URL (`/p/<token>/`) that serves one app without
login. Like API tokens, only the SHA-256 of a link's token is stored; the clear token (and so
the URL) is shown once, when the link is made. Every request looks the link up again, so a
revoked link stops working at once.
"""

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import isoformat, utcnow
from dockyard.controller.store.models import Job, PublicLink, Workspace
from dockyard.errors import NotFound

TOKEN_PREFIX = "dyp_"  # noqa: S105 (a prefix, not a secret)
PUBLIC_ROOT = "/p"


def url_path(token: str) -> str:
    return f"{PUBLIC_ROOT}/{token}/"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    session: Session, ws: Workspace, job: Job, note: str | None, created_by: int | None
) -> tuple[str, PublicLink]:
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = PublicLink(
        workspace_id=ws.id,
        job_id=job.id,
        token_hash=_hash(clear),
        prefix=clear[:10],
        note=note,
        created_at=utcnow(),
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return clear, row


def for_job(session: Session, job: Job) -> list[PublicLink]:
    query = select(PublicLink).where(PublicLink.job_id == job.id).order_by(PublicLink.id)
    return list(session.scalars(query))


def revoke(session: Session, job: Job, link_id: int | None) -> list[PublicLink]:
    """Revoke one link of the job (by id), or all of its active ones; returns those revoked."""
    rows = [r for r in for_job(session, job) if link_id is None or r.id == link_id]
    if link_id is not None and not rows:
        raise NotFound(
            f"no public link {link_id} for {job.job_ref}; `dockyard app link list` shows them"
        )
    now = utcnow()
    revoked = [r for r in rows if r.revoked_at is None]
    for row in revoked:
        row.revoked_at = now
    return revoked


def resolve(session: Session, token: str) -> PublicLink | None:
    """The active link with this token, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    digest = _hash(token)
    row = session.scalar(select(PublicLink).where(PublicLink.token_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def as_dict(row: PublicLink, job_ref: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "job_ref": job_ref,
        "prefix": row.prefix,
        "note": row.note,
        "created_at": isoformat(row.created_at),
        "revoked_at": isoformat(row.revoked_at),
        "active": row.revoked_at is None,
    }
