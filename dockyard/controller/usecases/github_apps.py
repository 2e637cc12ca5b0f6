"""Linking a workspace with a GitHub App (docs/github.md, "Linking with a GitHub App").

The App (id, API, private key) is stored once — sealed key, a webhook secret generated
here, and an opaque id for its webhook URL (`/webhooks/github/app/<id>`) — and reused by
every later link made with the same App id and API. An App has one webhook for all its
installations, so its URL and secret are in the answer only when the App is first stored
(to paste into the App's settings); later links say the App's webhook is already set.

Before anything is stored, GitHub is asked, as the App (JWT): which installation covers the
repository (`GET /repos/{o}/{r}/installation`), and an installation token is minted for it
(which also warms the server's token cache). An unreadable key, a wrong App id (401) or an
App not installed on the repository (404) is a one-line error naming the fix, and nothing
is stored. A key that GitHub has just accepted replaces the stored one of the same App (a
rotated key: GitHub Apps may have several).
"""

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.clock import utcnow
from dockyard.controller import github_api, github_app
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import GithubApp, GithubLink, Workspace
from dockyard.controller.usecases import access, github
from dockyard.controller.usecases.access import Principal
from dockyard.errors import Conflict, InvalidInput


def link(
    ctl: Controller,
    principal: Principal,
    name: str,
    fields: dict[str, str],
    app_id: int,
    private_key: str,
) -> dict[str, Any]:
    """Link the workspace through a GitHub App (admin). The answer holds the App's webhook
    URL, and its secret only when this call stored the App (`app_created`)."""
    checked = github.check_fields(fields)
    pem = private_key.encode()
    github_app.check_app_id(app_id)
    github_app.load_private_key(pem)
    app = github_app.App(app_id, checked["api_url"], pem)
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        _refuse_if_linked(session, ws)
    installation = _installation(ctl, app, checked["repo"])
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        _refuse_if_linked(session, ws)
        row, secret = _stored_app(ctl, session, app)
        link_row = GithubLink(
            workspace_id=ws.id,
            hook_id=secrets.token_urlsafe(24),
            credential_kind="app",
            sealed_credential=None,
            sealed_secret=row.sealed_secret,  # the link's own URL checks with the App's secret
            created_at=utcnow(),
            app_ref=row.id,
            installation_id=installation,
            **checked,
        )
        session.add(link_row)
        session.flush()
        answer = github.link_dict(ctl, ws, link_row)
        github.record_link(session, ctl, principal, ws, link_row)
        app_url = app_webhook_url(ctl, row)
    made = {
        "webhook_created": False,
        "webhook_reason": "a GitHub App has one webhook, set in the App's settings",
        "webhook_secret": secret,
    }
    return {**answer, **made, "app_id": app_id, "installation_id": installation,
            "app_webhook_url": app_url, "app_created": secret is not None}  # fmt: skip


def app_webhook_url(ctl: Controller, row: GithubApp) -> str:
    return f"{ctl.settings.base_url}/webhooks/github/app/{row.hook_id}"


def _refuse_if_linked(session: Session, ws: Workspace) -> None:
    existing = session.scalar(select(GithubLink).where(GithubLink.workspace_id == ws.id))
    if existing is not None:
        raise Conflict(
            f"workspace {ws.name!r} is already linked to {existing.repo}; run"
            f" `dockyard workspace unlink-github {ws.name}` first"
        )


def _installation(ctl: Controller, app: github_app.App, repo: str) -> int:
    """The installation covering `repo`, proven by minting a token for it; one-line errors."""
    try:
        found = github_app.find_installation(app, repo, ctl.clock)
        ctl.github_credentials.tokens.token(app, found, repo)
    except github_api.GitHubError as exc:
        raise InvalidInput(f"GitHub App {app.app_id} on {repo}: {exc.message}") from None
    return found


def _stored_app(
    ctl: Controller, session: Session, app: github_app.App
) -> tuple[GithubApp, str | None]:
    """The App's row (made now, with its clear webhook secret, or found: secret None)."""
    row = _find(session, app)
    if row is not None:
        if ctl.keys.unseal(row.sealed_private_key) != app.private_key:
            row.sealed_private_key = ctl.keys.seal(app.private_key)
            ctl.github_credentials.tokens.forget(app)
        return row, None
    secret = secrets.token_hex(32)
    row = GithubApp(
        app_id=app.app_id,
        api_url=app.api_url,
        hook_id=secrets.token_urlsafe(24),
        sealed_private_key=ctl.keys.seal(app.private_key),
        sealed_secret=ctl.keys.seal(secret.encode()),
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same App, stored by a concurrent link
        raced = _find(session, app)
        if raced is None:
            raise
        return raced, None
    return row, secret


def _find(session: Session, app: github_app.App) -> GithubApp | None:
    return session.scalar(
        select(GithubApp).where(GithubApp.app_id == app.app_id, GithubApp.api_url == app.api_url)
    )
