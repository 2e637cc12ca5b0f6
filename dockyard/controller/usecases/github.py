"""GitHub links (docs/github.md): link a workspace to a repository, unlink it, and what
`workspace info` shows of the link.

Token mode only: the token arrives once, in the body of the link request, and is stored
sealed to the server's master key with a webhook secret generated here. The clear secret is
in the answer that creates the link and nowhere else (not the database, logs or later
answers). Each link gets its own opaque webhook URL (`/webhooks/github/<hook id>`), which is
how the receiver finds the link, and so the secret to check with, without parsing the body.

When asked, the webhook is created on GitHub with the token (`github_api.create_hook`), after
the link is committed: a token that may not (403/404), a GitHub that cannot be reached, or a
public URL GitHub could not call leave the link made and say why, and the user pastes the
URL and secret by hand. GitHub's hook id is kept so that unlinking deletes that webhook.
"""

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dockyard.clock import utcnow
from dockyard.controller import audit, github_api, github_oidc
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import GithubDelivery, GithubLink, Workspace
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal
from dockyard.errors import Conflict, InvalidInput, NotFound

DEFAULT_API_URL = "https://api.github.com"
BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
TOKEN = re.compile(r"[\x21-\x7e]{1,1024}")  # printable ASCII, no spaces
LOOPBACK = ("127.0.0.1", "::1", "localhost")
WEBHOOK_EVENTS = ("push", "pull_request")
APP_HOOK_KEPT = (
    "a GitHub App's webhook belongs to the App and stays; uninstall the App from the"
    " repository on GitHub if it should no longer see it"
)


def link(
    ctl: Controller,
    principal: Principal,
    name: str,
    fields: dict[str, str],
    token: str,
    create_webhook: bool = False,
) -> dict[str, Any]:
    """Link the workspace (admin); the answer holds the webhook URL and clear secret, and
    whether the webhook was created on GitHub (`webhook_created`, else `webhook_reason`)."""
    checked = check_fields(fields)
    check_token(token)
    hook_secret = secrets.token_hex(32)
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        existing = _link_of(session, ws)
        if existing is not None:
            raise Conflict(
                f"workspace {ws.name!r} is already linked to {existing.repo}; run"
                f" `dockyard workspace unlink-github {ws.name}` first"
            )
        row = GithubLink(
            workspace_id=ws.id,
            hook_id=secrets.token_urlsafe(24),
            credential_kind="token",
            sealed_credential=ctl.keys.seal(token.encode()),
            sealed_secret=ctl.keys.seal(hook_secret.encode()),
            created_at=utcnow(),
            **checked,
        )
        session.add(row)
        session.flush()
        answer = link_dict(ctl, ws, row)
        row_id = row.id
        record_link(session, ctl, principal, ws, row)
    made = {"webhook_created": False, "webhook_reason": "not asked to create it"}
    if create_webhook:
        made = _create_webhook(ctl, row_id, answer, token, hook_secret)
    return {**answer, **made, "webhook_secret": hook_secret}


def record_link(
    session: Session, ctl: Controller, principal: Principal, ws: Workspace, row: GithubLink
) -> None:
    """The link in the audit log: repository, branch, path and credential kind (no secret)."""
    detail = {"branch": row.branch, "path": row.path, "credential": row.credential_kind}
    actor = audit.token(session, principal.token_id)
    audit.record(session, actor, "github.link", ctl.clock.now(), ws, row.repo, detail)


def _create_webhook(
    ctl: Controller, row_id: int, link: dict[str, Any], token: str, hook_secret: str
) -> dict[str, Any]:
    """Create the link's webhook on GitHub; on any failure, the one-line reason."""
    url = link["webhook_url"]
    if _is_loopback(url) and not _is_loopback(link["api_url"]):
        reason = f"{url} is a loopback address GitHub cannot reach: set DOCKYARD_PUBLIC_URL"
        return {"webhook_created": False, "webhook_reason": reason}
    api = github_api.GitHubApi(link["api_url"], link["repo"], github_api.TokenAuth(token))
    try:
        hook_id = api.create_hook(url, hook_secret, WEBHOOK_EVENTS)
    except github_api.GitHubError as exc:
        return {"webhook_created": False, "webhook_reason": exc.message}
    with ctl.db.session() as session:
        row = session.get(GithubLink, row_id)
        if row is not None:
            row.github_hook_id = hook_id
    return {"webhook_created": True, "webhook_reason": None, "github_hook_id": hook_id}


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK


def unlink(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    """Remove the link (admin). Deliveries stay as history; unprocessed ones are ignored."""
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        row = _link_of(session, ws)
        if row is None:
            raise NotFound(f"workspace {ws.name!r} is not linked to GitHub")
        session.execute(
            update(GithubDelivery)
            .where(GithubDelivery.link_id == row.id, GithubDelivery.status == "received")
            .values(status="ignored", outcome="the workspace was unlinked", processed_at=utcnow())
        )
        answer: dict[str, Any] = {"workspace": ws.name, "repo": row.repo, "unlinked": True}
        answer["credential_kind"] = row.credential_kind
        hook = (row.api_url, row.repo, row.github_hook_id, row.sealed_credential)
        session.delete(row)
        actor = audit.token(session, principal.token_id)
        detail = {"credential": row.credential_kind}
        audit.record(session, actor, "github.unlink", ctl.clock.now(), ws, row.repo, detail)
    if answer["credential_kind"] == "app":  # the App's one webhook serves its other links
        answer["webhook_deleted"], answer["webhook_reason"] = False, APP_HOOK_KEPT
        return answer
    answer["webhook_deleted"], answer["webhook_reason"] = _delete_webhook(ctl, *hook)
    return answer


def _delete_webhook(
    ctl: Controller, api_url: str, repo: str, hook_id: int | None, sealed: str | None
) -> tuple[bool, str | None]:
    """Delete the webhook dockyard created at link time; one made by hand is left alone."""
    if hook_id is None or sealed is None:
        return False, "dockyard did not create it: delete it in the repository's settings"
    token = ctl.keys.unseal(sealed).decode()
    try:
        github_api.GitHubApi(api_url, repo, github_api.TokenAuth(token)).delete_hook(hook_id)
    except github_api.GitHubError as exc:
        return False, exc.message
    return True, None


def summary(ctl: Controller, session: Session, ws: Workspace) -> dict[str, Any] | None:
    """The link as `workspace info` shows it (never the token or the secret), or None."""
    row = _link_of(session, ws)
    if row is None:
        return None
    info = link_dict(ctl, ws, row)
    last = session.scalar(
        select(GithubDelivery)
        .where(GithubDelivery.workspace_id == ws.id)
        .order_by(GithubDelivery.received_at.desc(), GithubDelivery.id.desc())
        .limit(1)
    )
    info["last_delivery"] = None if last is None else delivery_dict(last)
    return info


def link_dict(ctl: Controller, ws: Workspace, row: GithubLink) -> dict[str, Any]:
    return {
        "workspace": ws.name,
        "repo": row.repo,
        "branch": row.branch,
        "path": row.path,
        "api_url": row.api_url,
        "credential_kind": row.credential_kind,
        "webhook_url": f"{ctl.settings.base_url}/webhooks/github/{row.hook_id}",
        "created_at": row.created_at.isoformat(),
        "last_processed_head": row.last_processed_head,
        "last_processed_at": row.last_processed_at.isoformat() if row.last_processed_at else None,
        "github_hook_id": row.github_hook_id,
    }


def delivery_dict(row: GithubDelivery) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id,
        "event": row.event,
        "action": row.action,
        "ref": row.ref,
        "head_sha": row.head_sha,
        "status": row.status,
        "outcome": row.outcome,
        "received_at": row.received_at.isoformat(),
    }


def _link_of(session: Session, ws: Workspace) -> GithubLink | None:
    return session.scalar(select(GithubLink).where(GithubLink.workspace_id == ws.id))


def check_fields(fields: dict[str, str]) -> dict[str, str]:
    """repo, branch, path and api_url, checked and normalised; one-line errors."""
    repo = fields.get("repo", "").strip()
    if not github_oidc.REPOSITORY.fullmatch(repo):
        raise InvalidInput(f"--repo {repo!r} is not OWNER/NAME (e.g. acme/pipelines)")
    branch = fields.get("branch") or "main"
    if not BRANCH.fullmatch(branch) or ".." in branch or branch.startswith(("/", "-")):
        raise InvalidInput(f"--branch {branch!r} is not a branch name (e.g. main)")
    return {
        "repo": repo,
        "branch": branch.removeprefix("refs/heads/"),
        "path": check_path(fields.get("path") or ""),
        "api_url": check_api_url(fields.get("api_url") or DEFAULT_API_URL),
    }


def check_path(path: str) -> str:
    """A folder inside the repository: relative, no `..`; "" is the root."""
    clean = path.strip().strip("/")
    parts = clean.split("/") if clean else []
    if len(clean) > 255 or any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise InvalidInput(f"--path {path!r} is not a folder inside the repository (e.g. etl)")
    return clean


def check_api_url(url: str) -> str:
    """https, or http on loopback only (a test's stand-in for GitHub)."""
    parts = urlsplit(url.strip())
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK
    if len(url) > 255 or not parts.hostname or not (parts.scheme == "https" or loopback):
        raise InvalidInput(
            f"--api-url {url!r} is not an https URL (e.g. https://github.example.com/api/v3)"
        )
    return url.strip().rstrip("/")


def check_token(token: str) -> None:
    if not TOKEN.fullmatch(token):
        raise InvalidInput(
            "the GitHub token is empty, too long or has spaces; put the token itself in the"
            " variable --token-env names"
        )
