"""`POST /webhooks/github/<hook id>` (a link's webhook) and `POST /webhooks/github/app/<app
hook id>` (a GitHub App's one webhook): verify, store, answer 202 (docs/github.md, "Webhook").

The order is the point. The hook id in the URL finds the link (an unknown one is 404 before
any body byte is read); a missing signature is 401, also before the body. Then the body is
read, capped by `web/limits.py` (DOCKYARD_MAX_WEBHOOK_BYTES), and its HMAC checked: a wrong
one is 401 and nothing is stored. Only a verified body is parsed, classified
(`events.classify`) and stored (`deliveries.record`), and only once it is committed is 202
answered; the processing loop is woken after the answer is sent. A delivery id already
stored answers 200 and does nothing.

A GitHub App has one webhook URL and secret for all its installations: its deliveries are
checked with the App's secret, the same way and in the same order, then routed by
`repository.full_name` to every link made with the App for that repository — one stored
delivery per link, classified and made idempotent exactly as on a link's own URL. Events
without a repository (`ping`, `installation`, `installation_repositories`) are recorded on
every link of the App.

A link's secret is read from the database and opened once, then remembered
(`hooksecrets`): the store step re-reads the link anyway, and refuses if it is gone or its
secret changed, so the memory only saves work, never decides.
"""

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from dockyard import errors
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import GithubApp, GithubLink
from dockyard.webhooks import deliveries, events, hooksecrets, signature
from dockyard.webhooks.wiring import Webhooks

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

HOOK_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
EVENT = re.compile(r"[a-z_]{1,64}")


@dataclass(frozen=True, slots=True)
class Stored:
    delivery_id: str
    status: str
    kind: str
    outcome: str | None
    new: bool


@router.post("/webhooks/github/{hook_id}", status_code=202)
async def github_webhook(hook_id: str, request: Request) -> JSONResponse:
    """A GitHub webhook delivery for the link whose URL this is (`workspace link-github`)."""
    hooks: Webhooks = request.app.state.webhooks
    known = hooks.secrets.get(hook_id) or await _look_up(hooks, hook_id)
    header = request.headers.get(signature.HEADER)
    if not header:
        raise errors.Unauthorized(
            f"missing {signature.HEADER}: give the GitHub webhook the secret that"
            " `dockyard workspace link-github` printed"
        )
    body = await request.body()
    verified = signature.verify(known.secret, body, header)
    if not verified and known.remembered:  # the link's secret may have changed: ask the DB
        known = await _look_up(hooks, hook_id)
        verified = signature.verify(known.secret, body, header)
    if not verified:
        raise errors.Unauthorized(
            f"{signature.HEADER} does not match the body: the webhook's secret is not the one"
            " `dockyard workspace link-github` printed (unlink and link again for a new one)"
        )
    event, delivery_id = _headers(request)
    try:
        stored = await run_in_threadpool(
            _store, hooks.ctl, hook_id, known.sealed, delivery_id, event, body
        )
    except (errors.NotFound, errors.Unauthorized):
        hooks.secrets.forget(hook_id)
        raise
    answer = {"delivery": stored.delivery_id, "status": stored.status, "kind": stored.kind}
    if stored.outcome:
        answer["outcome"] = stored.outcome
    if not stored.new:
        return JSONResponse({**answer, "replay": True}, status_code=200)
    wake = BackgroundTask(hooks.processor.wake) if stored.status == "received" else None
    return JSONResponse(answer, status_code=202, background=wake)


async def _look_up(hooks: Webhooks, hook_id: str) -> hooksecrets.Known:
    """The link's secret from the database, remembered for the next delivery."""
    known = await run_in_threadpool(_secret_of, hooks.ctl, hook_id)
    hooks.secrets.put(hook_id, known)
    return known


def _secret_of(ctl: Controller, hook_id: str) -> hooksecrets.Known:
    """The link's webhook secret, opened; 404 for a URL no link has."""
    with ctl.db.session() as session:
        link = deliveries.find_link(session, hook_id) if HOOK_ID.fullmatch(hook_id) else None
        if link is None:
            raise errors.NotFound(
                "no GitHub link has this webhook URL; run `dockyard workspace info` for the"
                " linked workspace's URL"
            )
        sealed = link.sealed_secret
    return hooksecrets.Known(sealed, ctl.keys.unseal(sealed))


def _headers(request: Request) -> tuple[str, str]:
    """`X-GitHub-Event` and `X-GitHub-Delivery`, checked (after the signature)."""
    event = request.headers.get("x-github-event", "")
    delivery_id = request.headers.get("x-github-delivery", "")
    if not EVENT.fullmatch(event):
        raise errors.InvalidInput("missing or malformed X-GitHub-Event header")
    if not DELIVERY_ID.fullmatch(delivery_id):
        raise errors.InvalidInput("missing or malformed X-GitHub-Delivery header")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise errors.InvalidInput(
            f"content type {content_type or '(none)'}: set the GitHub webhook's content type"
            " to application/json"
        )
    return event, delivery_id


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise errors.InvalidInput("the delivery's body is not JSON") from None


def _store(
    ctl: Controller, hook_id: str, sealed: str, delivery_id: str, event: str, body: bytes
) -> Stored:
    """Parse the verified body and store the delivery, if the link whose secret checked the
    signature (`sealed`) is still there (one worker-thread hop for both)."""
    payload = _parse(body)
    with ctl.db.session() as session:
        link = deliveries.find_link(session, hook_id)
        if link is None:  # unlinked since the secret was read
            raise errors.NotFound("this GitHub link was removed; nothing was stored")
        if link.sealed_secret != sealed:
            raise errors.Unauthorized(
                f"{signature.HEADER} was checked with a secret this link no longer has;"
                " nothing was stored (GitHub's next delivery uses the new secret)"
            )
        target = events.Target(link.repo, link.branch)
        classified = events.classify(event, payload, target)
        row, new = deliveries.record(session, link, delivery_id, event, classified, ctl.clock.now())
        stored = Stored(row.delivery_id, row.status, row.kind, row.outcome, new)
    log.info(
        "github delivery",
        extra={
            "action": "github_delivery",
            "delivery": delivery_id,
            "event": event,
            "status": stored.status,
            "replay": not new,
        },
    )
    return stored


@router.post("/webhooks/github/app/{app_hook_id}", status_code=202)
async def github_app_webhook(app_hook_id: str, request: Request) -> JSONResponse:
    """A GitHub App's webhook delivery (`workspace link-github --app-id` printed the URL)."""
    hooks: Webhooks = request.app.state.webhooks
    secret = await run_in_threadpool(_app_secret_of, hooks.ctl, app_hook_id)
    header = request.headers.get(signature.HEADER)
    if not header:
        raise errors.Unauthorized(
            f"missing {signature.HEADER}: give the GitHub App's webhook the secret that"
            " `dockyard workspace link-github --app-id` printed when the App was first linked"
        )
    body = await request.body()
    if not signature.verify(secret, body, header):
        raise errors.Unauthorized(
            f"{signature.HEADER} does not match the body: the App's webhook secret is not the"
            " one `dockyard workspace link-github --app-id` printed when it was first linked"
        )
    event, delivery_id = _headers(request)
    payload = await run_in_threadpool(_parse, body)
    stored = await run_in_threadpool(
        _store_app, hooks.ctl, app_hook_id, delivery_id, event, payload
    )
    answer: dict[str, Any] = {
        "delivery": delivery_id,
        "links": [{"status": s.status, "kind": s.kind, "outcome": s.outcome} for s in stored],
    }
    if not stored:
        repo = events.repository(payload) or "(none)"
        answer["outcome"] = f"no link of this App is for repository {repo}; nothing stored"
    if stored and not any(s.new for s in stored):
        return JSONResponse({**answer, "replay": True}, status_code=200)
    received = any(s.new and s.status == "received" for s in stored)
    wake = BackgroundTask(hooks.processor.wake) if received else None
    return JSONResponse(answer, status_code=202, background=wake)


def _app_secret_of(ctl: Controller, app_hook_id: str) -> bytes:
    """The App's webhook secret, opened; 404 for a URL no stored App has."""
    with ctl.db.session() as session:
        app = _find_app(session, app_hook_id) if HOOK_ID.fullmatch(app_hook_id) else None
        if app is None:
            raise errors.NotFound(
                "no GitHub App has this webhook URL; `dockyard workspace link-github --app-id`"
                " printed the App's URL when it was first linked"
            )
        sealed = app.sealed_secret
    return ctl.keys.unseal(sealed)


def _find_app(session: Session, app_hook_id: str) -> GithubApp | None:
    return session.scalar(select(GithubApp).where(GithubApp.hook_id == app_hook_id))


def _store_app(
    ctl: Controller, app_hook_id: str, delivery_id: str, event: str, payload: Any
) -> list[Stored]:
    """One stored delivery per link of the App that the delivery is for."""
    repo = events.repository(payload)
    with ctl.db.session() as session:
        app = _find_app(session, app_hook_id)
        if app is None:
            raise errors.NotFound("this GitHub App was removed; nothing was stored")
        links = session.scalars(
            select(GithubLink).where(GithubLink.app_ref == app.id).order_by(GithubLink.id)
        ).all()
        now = ctl.clock.now()
        stored = []
        for link in links:
            if repo is not None and link.repo.lower() != repo.lower():
                continue
            classified = events.classify(event, payload, events.Target(link.repo, link.branch))
            row, new = deliveries.record(session, link, delivery_id, event, classified, now)
            stored.append(Stored(row.delivery_id, row.status, row.kind, row.outcome, new))
    log.info(
        "github app delivery",
        extra={
            "action": "github_delivery",
            "delivery": delivery_id,
            "event": event,
            "links": len(stored),
            "replay": bool(stored) and not any(s.new for s in stored),
        },
    )
    return stored
