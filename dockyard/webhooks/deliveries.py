"""The `github_delivery` table: a delivery is stored before it is answered, claimed with a
guarded UPDATE when it is processed, and finished with its outcome.

Idempotency lives in the database: `(workspace_id, delivery_id)` is unique, so a redelivery
(GitHub's "Redeliver" button, a retry by a proxy, a replay) finds the stored row and does no
work, even when two copies race (the loser's INSERT fails on the constraint).
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.controller.store.models import GithubDelivery, GithubLink
from dockyard.webhooks.events import Classified

RECEIVED, PROCESSING, DONE, IGNORED, FAILED = (
    "received",
    "processing",
    "done",
    "ignored",
    "failed",
)


@dataclass(frozen=True, slots=True)
class Group:
    """Received deliveries processed as one: every push of a link (the head is fetched at
    processing time, so one deploy answers them all), or the pull request deliveries of one
    link and head commit (one plan each)."""

    kind: str
    link_id: int
    head_sha: str | None
    ids: tuple[int, ...]
    shas: tuple[str, ...] = ()  # the head commits the deliveries named, oldest first, distinct
    ref: str | None = None  # a plan's `refs/pull/<number>/head`


def find_link(session: Session, hook_id: str) -> GithubLink | None:
    return session.scalar(select(GithubLink).where(GithubLink.hook_id == hook_id))


def record(
    session: Session,
    link: GithubLink,
    delivery_id: str,
    event: str,
    classified: Classified,
    now: datetime,
) -> tuple[GithubDelivery, bool]:
    """The stored delivery and whether it is new (False: a replay, nothing was written).

    New deliveries are the common case: the insert is tried first, and a replay is found
    by the unique constraint refusing it (one statement fewer per new delivery than looking
    first)."""
    row = GithubDelivery(
        workspace_id=link.workspace_id,
        link_id=link.id,
        delivery_id=delivery_id,
        event=event,
        action=classified.action,
        kind=classified.kind,
        repo=classified.repo,
        ref=classified.ref,
        head_sha=classified.head_sha,
        before_sha=classified.before_sha,
        after_sha=classified.after_sha,
        received_at=now,
        status=classified.status,
        outcome=classified.reason,
        attempts=0,
        processed_at=now if classified.status != RECEIVED else None,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # stored before (a replay), or by a concurrent request
        existing = _by_delivery_id(session, link.workspace_id, delivery_id)
        if existing is None:
            raise
        return existing, False
    return row, True


def _by_delivery_id(session: Session, workspace_id: int, delivery_id: str) -> GithubDelivery | None:
    return session.scalar(
        select(GithubDelivery).where(
            GithubDelivery.workspace_id == workspace_id,
            GithubDelivery.delivery_id == delivery_id,
        )
    )


def pending(session: Session) -> list[Group]:
    """Received deliveries, grouped for processing (oldest first)."""
    rows = session.execute(
        select(
            GithubDelivery.id,
            GithubDelivery.kind,
            GithubDelivery.link_id,
            GithubDelivery.head_sha,
            GithubDelivery.ref,
        )
        .where(GithubDelivery.status == RECEIVED)
        .order_by(GithubDelivery.id)
    ).all()
    groups: dict[tuple[str, int, str | None, str | None], list[tuple[int, str | None]]] = {}
    for row_id, kind, link_id, head, ref in rows:
        plan = kind == "plan"
        key = (kind, link_id, head if plan else None, ref if plan else None)
        groups.setdefault(key, []).append((row_id, head))
    return [
        Group(
            kind,
            link,
            head,
            tuple(i for i, _ in members),
            tuple(dict.fromkeys(sha for _, sha in members if sha)),
            ref,
        )
        for (kind, link, head, ref), members in groups.items()
    ]


def claim(session: Session, ids: tuple[int, ...]) -> list[int]:
    """Move the still-received ones of `ids` to processing; returns those claimed."""
    claimed = list(
        session.scalars(
            update(GithubDelivery)
            .where(GithubDelivery.id.in_(ids), GithubDelivery.status == RECEIVED)
            .values(status=PROCESSING, attempts=GithubDelivery.attempts + 1)
            .returning(GithubDelivery.id)
        )
    )
    return claimed


def finish(session: Session, ids: list[int], status: str, outcome: str, now: datetime) -> None:
    session.execute(
        update(GithubDelivery)
        .where(GithubDelivery.id.in_(ids), GithubDelivery.status == PROCESSING)
        .values(status=status, outcome=outcome, processed_at=now)
    )


def recover(session: Session) -> int:
    """Deliveries a crash left in processing go back to received (processing is
    idempotent: deploying the head that is already deployed changes nothing)."""
    result = session.execute(
        update(GithubDelivery).where(GithubDelivery.status == PROCESSING).values(status=RECEIVED)
    )
    return int(getattr(result, "rowcount", 0) or 0)
