"""The loop that sends the alert outbox: due rows are claimed (a guarded UPDATE that leases
them, so two servers on one database never send the same attempt at once), sent outside any
transaction, and every attempt recorded: attempts, the last error (one line), the status
(`pending` → `sent`, or `failed` after the last attempt) and when it was sent.

A failed attempt waits `backoff_s[attempts - 1]` (the last value repeats) before the next
one. A crash between the send and its record sends that alert again once its lease is over:
delivery is at least once, and receivers recognise a repeat by its `delivery_id`.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller.alerts import messages, senders
from dockyard.controller.alerts.senders import Outcome
from dockyard.controller.keys import Keyring
from dockyard.controller.loop import Loop
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import AlertChannel, AlertDelivery

log = logging.getLogger(__name__)
BATCH = 20  # rows sent per step (the step after comes at once when there were more)
IDLE_S = 30.0  # the longest sleep: new rows wake the loop, retries are due by the clock


@dataclass(frozen=True, slots=True)
class Policy:
    backoff_s: tuple[float, ...]
    max_attempts: int
    timeout_s: float
    base_url: str

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones."""
        if not self.backoff_s:
            return 0.0
        return self.backoff_s[min(attempts, len(self.backoff_s)) - 1]

    @property
    def lease_s(self) -> float:
        """How long a claimed row is someone's: an attempt ends well within it."""
        return 3 * self.timeout_s + 30.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send needs, read in a short transaction."""

    delivery_id: int
    kind: str
    config: dict[str, Any]
    secret: str | None
    message: dict[str, Any]


class Sender(Loop):
    name = "alerts"

    def __init__(self, db: Database, clock: Clock, keys: Keyring, policy: Policy) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.keys = keys
        self.policy = policy

    def step(self) -> float:
        now = self.clock.now()
        due = self._due(now)
        if due:
            crashpoints.reached("alert_unsent")  # the run's end and its alert committed
        for delivery_id in due:
            if self._claim(delivery_id, now):
                self.deliver(delivery_id, self.policy.max_attempts)
        if len(due) == BATCH:
            return 0.0
        return self._sleep(self.clock.now())

    def _due(self, now: datetime) -> list[int]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(AlertDelivery.id)
                    .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
                    .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
                    .limit(BATCH)
                )
            )

    def _claim(self, delivery_id: int, now: datetime) -> bool:
        lease = now + timedelta(seconds=self.policy.lease_s)
        with self.db.session() as session:
            result = session.execute(
                update(AlertDelivery)
                .where(
                    AlertDelivery.id == delivery_id,
                    AlertDelivery.status == "pending",
                    AlertDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _sleep(self, now: datetime) -> float:
        with self.db.session() as session:
            nxt = session.scalar(
                select(AlertDelivery.next_attempt_at)
                .where(
                    AlertDelivery.status == "pending", AlertDelivery.next_attempt_at.is_not(None)
                )
                .order_by(AlertDelivery.next_attempt_at)
                .limit(1)
            )
        if nxt is None:
            return IDLE_S
        return max(0.0, min(IDLE_S, (nxt - now).total_seconds()))

    # one delivery -------------------------------------------------------------------------
    def deliver(self, delivery_id: int, max_attempts: int) -> AlertDelivery:
        """Send one row now and record the attempt; returns the row as recorded."""
        attempt = self._read(delivery_id)
        if not isinstance(attempt, Attempt):
            return self._record(delivery_id, Outcome(False, attempt), max_attempts)
        try:
            outcome = self.send(attempt)
        except Exception as exc:  # a bug must end as a recorded attempt, not a stuck row
            log.exception(
                "alert send failed", extra={"action": "alert", "delivery_id": delivery_id}
            )
            outcome = senders.failed(f"internal error ({type(exc).__name__})")
        return self._record(delivery_id, outcome, max_attempts)

    def _read(self, delivery_id: int) -> Attempt | str:
        """What to send, or why it cannot be sent (its channel is gone or unreadable)."""
        with self.db.session() as session:
            row = session.get(AlertDelivery, delivery_id)
            assert row is not None
            channel = session.get(AlertChannel, row.channel_id)
            if channel is None:
                return "the channel was removed"
            secret = None
            if channel.sealed_secret is not None:
                try:
                    secret = self.keys.unseal(channel.sealed_secret).decode()
                except Exception as exc:  # noqa: BLE001 — a wrong master key, said in the record
                    return senders.one_line(str(exc))
            return Attempt(row.id, channel.kind, dict(channel.config), secret, dict(row.message))

    def send(self, attempt: Attempt) -> Outcome:
        url = messages.run_url(self.policy.base_url, attempt.message)
        timeout = self.policy.timeout_s
        if attempt.kind == "webhook":
            body = messages.webhook_body(attempt.message, attempt.delivery_id, url)
            stamp = int(self.clock.now().timestamp())
            headers = {
                messages.SIGNATURE_HEADER: messages.signature(attempt.secret or "", stamp, body),
                messages.TIMESTAMP_HEADER: str(stamp),
                "X-Dockyard-Event": str(attempt.message["event"]),
                "X-Dockyard-Delivery": str(attempt.delivery_id),
            }
            hide = (attempt.secret,) if attempt.secret else ()
            return senders.post(str(attempt.config["url"]), body, headers, timeout, hide)
        if attempt.kind == "slack":
            assert attempt.secret is not None  # the Slack URL is the secret
            body = messages.slack_body(attempt.message, url)
            return senders.post(attempt.secret, body, {}, timeout, (attempt.secret,))
        mail = messages.email(
            attempt.message, url, str(attempt.config["sender"]), list(attempt.config["to"])
        )
        return senders.send_mail(attempt.config, attempt.secret, mail, timeout)

    def _record(self, delivery_id: int, outcome: Outcome, max_attempts: int) -> AlertDelivery:
        now = self.clock.now()
        with self.db.session() as session:
            row = session.get(AlertDelivery, delivery_id)
            assert row is not None
            row.attempts += 1
            if outcome.ok:
                row.status, row.sent_at, row.next_attempt_at = "sent", now, None
            else:
                row.last_error = outcome.error
                done = row.attempts >= max_attempts or outcome.error == "the channel was removed"
                row.status = "failed" if done else "pending"
                delay = timedelta(seconds=self.policy.delay(row.attempts))
                row.next_attempt_at = None if done else now + delay
            _log(row, outcome)
            return row


def _log(row: AlertDelivery, outcome: Outcome) -> None:
    extra = {
        "action": "alert",
        "delivery_id": row.id,
        "channel": row.channel_name,
        "event": row.event,
        "attempts": row.attempts,
    }
    if outcome.ok:
        log.info("alert sent", extra=extra)
    else:
        log.warning("alert not sent", extra={**extra, "status": row.status, "error": outcome.error})
