"""Asking GitHub to redeliver what a GitHub App's webhook failed to deliver (docs/github.md,
"Redelivery"). GitHub itself never retries a failed delivery; it keeps a log of each App
webhook's deliveries and redelivers one when asked (`POST /app/hook/deliveries/{id}/attempts`).

The sweeper calls `redeliver_all` once per pass. For each stored App it reads the delivery
log (as the App, with its JWT), newest first, in at most `MAX_PAGES` pages and no further
back than `WINDOW` (what the sweeper's passes have not looked at yet is recent; older
failures were asked for then), and asks again for each delivery GitHub marks failed (a
status code of 0 — no answer — or ≥ 400) unless:

- dockyard has stored a delivery with that `guid` (a redelivery keeps the guid), or
- another attempt with that `guid` succeeded (dockyard answered it; with no link for the
  repository nothing is stored, and asking again would change nothing), or
- it was already asked for in this pass (the log lists every attempt of a guid).

At most `MAX_PER_PASS` redeliveries are asked per App and pass, newest first, so a long
outage is healed over a few passes without a burst; asking is idempotent (a redelivery that
lands is stored once, by its guid, like any replay). The push sweep heals a branch even
without this; redelivery also brings back pull request plans and exactly what GitHub sent.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from dockyard.clock import Clock
from dockyard.controller import github_app
from dockyard.controller.github_api import AppApi, GitHubError, HookDelivery
from dockyard.controller.github_credentials import Credentials
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import GithubDelivery

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
MAX_PAGES = 3
MAX_PER_PASS = 10


@dataclass(frozen=True, slots=True)
class Redelivered:
    app_id: int
    asked: tuple[str, ...]  # the guids GitHub was asked to redeliver
    seen: int  # log entries looked at
    error: str | None = None


def redeliver_all(credentials: Credentials, db: Database, clock: Clock) -> list[Redelivered]:
    """One pass over every stored App; a failing App is logged and the others go on."""
    done = []
    for _row_id, app in credentials.apps():
        api = github_app.app_api(app, clock, credentials.transport)
        try:
            done.append(redeliver(api, db, app.app_id, clock.now()))
        except GitHubError as exc:
            log.warning(
                "github redelivery failed",
                extra={"action": "github_redeliver", "app_id": app.app_id, "error": exc.message},
            )
            done.append(Redelivered(app.app_id, (), 0, exc.message))
    return done


def redeliver(api: AppApi, db: Database, app_id: int, now: datetime) -> Redelivered:
    """Ask again for the App's failed deliveries that dockyard has not stored (see above)."""
    recent = list(_recent(api, now - WINDOW))
    wanted = to_redeliver(recent, _stored(db, {d.guid for d in recent if not d.ok}))
    asked = []
    for delivery in wanted[:MAX_PER_PASS]:
        api.redeliver(delivery.id)
        asked.append(delivery.guid)
    if asked:
        log.info(
            "github redelivery asked",
            extra={"action": "github_redeliver", "app_id": app_id, "guids": asked},
        )
    return Redelivered(app_id, tuple(asked), len(recent))


def to_redeliver(recent: list[HookDelivery], stored: set[str]) -> list[HookDelivery]:
    """The newest failed attempt of each guid that never succeeded and is not stored."""
    succeeded = {d.guid for d in recent if d.ok}
    chosen: dict[str, HookDelivery] = {}
    for delivery in recent:  # newest first
        if delivery.ok or delivery.guid in succeeded or delivery.guid in stored:
            continue
        chosen.setdefault(delivery.guid, delivery)
    return list(chosen.values())


def _recent(api: AppApi, since: datetime) -> list[HookDelivery]:
    """The log's entries delivered at or after `since`, newest first (it is sorted so)."""
    found = []
    for delivery in api.hook_deliveries(MAX_PAGES):
        when = _when(delivery.delivered_at)
        if when is not None and when < since:
            break
        found.append(delivery)
    return found


def _when(text: str) -> datetime | None:
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo is not None else None


def _stored(db: Database, guids: set[str]) -> set[str]:
    if not guids:
        return set()
    with db.session() as session:
        rows = session.scalars(
            select(GithubDelivery.delivery_id).where(GithubDelivery.delivery_id.in_(guids))
        )
        return set(rows)
