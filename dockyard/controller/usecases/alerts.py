"""A workspace's alert channels (docs/alerts.md): add, list, remove, send a test, and the
recent delivery records. Admin only: a channel's target is where run failures are told.

Secrets — a webhook's signing secret, a Slack incoming-webhook URL (whoever has it can post
to the channel), an SMTP password — arrive once, in the request that adds the channel, and
are stored sealed to the server's master key. Answers show what identifies them (a
webhook secret's first characters, "set"), never the value; a secret the server generated
for a webhook is in the answer that adds the channel and nowhere else.
"""

import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dockyard.controller.alerts import kinds, messages
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import AlertChannel, AlertDelivery, Workspace
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal
from dockyard.errors import Conflict, InvalidInput, NotFound

SECRET = re.compile(r"[\x21-\x7e]{16,256}")  # printable ASCII, no spaces
MAX_PASSWORD = 1024
MAX_DELIVERIES = 200


def add_channel(
    ctl: Controller,
    principal: Principal,
    name: str,
    channel: str,
    kind: str,
    fields: dict[str, Any],
    events: list[str] | None = None,
) -> dict[str, Any]:
    """Add a channel (admin). `fields`: `url` and `secret` (webhook), `url` (Slack), or
    host, port, security, username, password, sender, to (e-mail)."""
    kinds.check_name(channel)
    wanted = kinds.check_events(events)
    config, secret, generated = _checked(kind, fields)
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        _check_room(ctl, session, ws, channel)
        row = AlertChannel(
            workspace_id=ws.id,
            name=channel,
            kind=kind,
            events=wanted,
            config=config,
            sealed_secret=ctl.keys.seal(secret.encode()) if secret else None,
            secret_hint=kinds.hint(kind, secret),
            created_at=ctl.clock.now(),
        )
        session.add(row)
        session.flush()
        answer = channel_dict(ws, row)
    if generated:
        answer["webhook_secret"] = secret  # shown this once
    return answer


def _checked(kind: str, fields: dict[str, Any]) -> tuple[dict[str, Any], str | None, bool]:
    """(shown config, secret, whether the secret was generated here) for a kind."""
    if kind == "webhook":
        url = kinds.check_url(str(fields.get("url") or ""), "--url")
        given = fields.get("secret")
        if given is not None and not SECRET.fullmatch(str(given)):
            raise InvalidInput(
                "the webhook secret must be 16-256 printable characters without spaces;"
                " leave it out and the server makes one"
            )
        secret = str(given) if given is not None else secrets.token_hex(32)
        return {"url": url}, secret, given is None
    if kind == "slack":
        url = kinds.check_url(str(fields.get("url") or ""), "the Slack webhook URL", True)
        return {}, url, False
    if kind == "email":
        password = fields.get("password")
        if password is not None and (not password or len(str(password)) > MAX_PASSWORD):
            raise InvalidInput("the SMTP password is empty or longer than 1024 characters")
        return kinds.check_smtp(fields), (str(password) if password else None), False
    raise InvalidInput(f"unknown channel kind {kind!r}; choose from {', '.join(kinds.KINDS)}")


def _check_room(ctl: Controller, session: Session, ws: Workspace, channel: str) -> None:
    if _channel(session, ws, channel) is not None:
        raise Conflict(
            f"workspace {ws.name!r} already has an alert channel {channel!r}; remove it first"
            f" (`dockyard alert remove {channel}`) or choose another name"
        )
    count = session.scalar(
        select(func.count()).select_from(AlertChannel).where(AlertChannel.workspace_id == ws.id)
    )
    limit = ctl.settings.alert_max_channels
    if (count or 0) >= limit:
        raise Conflict(
            f"workspace {ws.name!r} has {limit} alert channels, the most it may have"
            " (DOCKYARD_ALERT_MAX_CHANNELS); remove one first"
        )


def list_channels(ctl: Controller, principal: Principal, name: str) -> list[dict[str, Any]]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        rows = session.scalars(
            select(AlertChannel)
            .where(AlertChannel.workspace_id == ws.id)
            .order_by(AlertChannel.name)
        )
        return [channel_dict(ws, row) for row in rows]


def remove_channel(
    ctl: Controller, principal: Principal, name: str, channel: str
) -> dict[str, Any]:
    """Remove a channel (admin); its unsent alerts are recorded as failed, its history stays."""
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        row = _found(session, ws, channel)
        answer = channel_dict(ws, row)
        session.execute(
            update(AlertDelivery)
            .where(AlertDelivery.channel_id == row.id, AlertDelivery.status == "pending")
            .values(status="failed", next_attempt_at=None, last_error="the channel was removed")
        )
        session.delete(row)
    return {**answer, "removed": True}


def test_channel(ctl: Controller, principal: Principal, name: str, channel: str) -> dict[str, Any]:
    """Send a test message through the channel now (one attempt, recorded like the others);
    the answer is its delivery record."""
    now = ctl.clock.now()
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        row = _found(session, ws, channel)
        delivery = AlertDelivery(
            workspace_id=ws.id,
            channel_id=row.id,
            channel_name=row.name,
            run_id=None,
            event="test",
            message=messages.test_facts(ws.name, row.name),
            status="pending",
            attempts=0,
            next_attempt_at=None,  # never the loop's: sent here, once
            created_at=now,
        )
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    return delivery_dict(ctl.alerts.deliver(delivery_id, max_attempts=1))


def deliveries(
    ctl: Controller, principal: Principal, name: str, limit: int = 50
) -> list[dict[str, Any]]:
    """The workspace's newest delivery records, newest first."""
    limit = max(1, min(limit, MAX_DELIVERIES))
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        rows = session.scalars(
            select(AlertDelivery)
            .where(AlertDelivery.workspace_id == ws.id)
            .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc())
            .limit(limit)
        )
        return [delivery_dict(row) for row in rows]


def _channel(session: Session, ws: Workspace, channel: str) -> AlertChannel | None:
    return session.scalar(
        select(AlertChannel).where(AlertChannel.workspace_id == ws.id, AlertChannel.name == channel)
    )


def _found(session: Session, ws: Workspace, channel: str) -> AlertChannel:
    row = _channel(session, ws, channel)
    if row is None:
        raise NotFound(
            f"workspace {ws.name!r} has no alert channel {channel!r}; see `dockyard alert list`"
        )
    return row


def channel_dict(ws: Workspace, row: AlertChannel) -> dict[str, Any]:
    """A channel as answers show it: never a secret's value."""
    return {
        "workspace": ws.name,
        "name": row.name,
        "kind": row.kind,
        "events": list(row.events),
        "target": target(row),
        "config": dict(row.config),
        "secret": row.secret_hint,
        "created_at": _iso(row.created_at),
    }


def target(row: AlertChannel) -> str:
    """Where a channel sends, in words that hold no secret."""
    config = row.config
    if row.kind == "webhook":
        return str(config["url"])
    if row.kind == "slack":
        return "Slack incoming webhook (URL stored sealed)"
    user = f"{config['username']}@" if config.get("username") else ""
    to = ", ".join(config["to"])
    return f"smtp://{user}{config['host']}:{config['port']} ({config['security']}) → {to}"


def delivery_dict(row: AlertDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "channel": row.channel_name,
        "event": row.event,
        "run_id": row.run_id,
        "job": row.message.get("job"),
        "run_number": row.message.get("run_number"),
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "next_attempt_at": _iso(row.next_attempt_at),
        "sent_at": _iso(row.sent_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
