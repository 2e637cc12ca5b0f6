"""Deployment and configuration versions: reconcile one, read the outcome of one, list the
history of each kind, show a deployment (its plan against the previous one, changed files),
and roll back to one (`controller/rollback.py`)."""

from typing import Any

from sqlalchemy import select

from dockyard import errors
from dockyard.controller import (
    audit,
    gitstore,
    isolation,
    manifests,
    planning,
    plantext,
    rollback,
    workspaces,
)
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import GithubLink, Reconciliation
from dockyard.controller.usecases import access
from dockyard.controller.usecases.access import Principal
from dockyard.errors import NotFound


def reconcile(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        access.workspace(session, principal, name, "deploy")
    outcome = ctl.reconciler.reconcile(name)
    return {"sha": outcome.sha, "changed": outcome.changed, **outcome.result}


def reconciliation(ctl: Controller, principal: Principal, name: str, sha: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        row = session.scalar(
            select(Reconciliation).where(
                Reconciliation.workspace_id == ws.id, Reconciliation.sha == sha
            )
        )
        if row is None:
            error = (
                ws.reconcile_error
                if ws.reconcile_error and ws.reconcile_error.startswith(sha[:12])
                else None
            )
            if error:
                raise NotFound(error, code=errors.RECONCILE_FAILED)
            raise NotFound(
                f"version {sha[:12]} is not reconciled (yet)", code=errors.NOT_RECONCILED
            )
        return {"sha": sha, "applied_at": row.applied_at.isoformat(), **row.result}


def versions(
    ctl: Controller, principal: Principal, name: str, kind: str
) -> list[dict[str, str | None]]:
    with ctl.db.session() as session:
        access.workspace(session, principal, name, "read")
    paths = gitstore.DEPLOYMENT_PATHS if kind == "deployment" else gitstore.CONFIGURATION_PATHS
    return [v.as_dict() for v in gitstore.history(access.repo(ctl, name), paths)]


def version_at(
    ctl: Controller, principal: Principal, name: str, sha: str | None, kind: str
) -> tuple[Any, gitstore.Version]:
    """The repository and the named version (default: the current one) of `kind`."""
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        current = ws.deployment_version if kind == "deployment" else ws.configuration_version
    sha = sha or current
    if sha is None:
        raise NotFound(f"workspace {name} has no {kind} yet; run `dockyard deploy`")
    repo = access.repo(ctl, name)
    return repo, gitstore.version_info(repo, sha)


def deployment_info(
    ctl: Controller, principal: Principal, name: str, sha: str | None
) -> dict[str, Any]:
    repo, version = version_at(ctl, principal, name, sha, "deployment")
    history = [v.sha for v in gitstore.history(repo, gitstore.DEPLOYMENT_PATHS)]
    if version.sha not in history:
        raise NotFound(
            f"{version.sha[:12]} is not a deployment version; `dockyard deployment list`"
        )
    index = history.index(version.sha)
    previous = history[index + 1] if index + 1 < len(history) else None
    manifest = manifest_at(repo, version.sha)
    plan = planning.plan(manifest_at(repo, previous) if previous else None, manifest)
    files = [
        p
        for p in gitstore.changed_paths(repo, previous, version.sha)
        if not p.startswith(gitstore.CONFIG + "/")
    ]
    return {
        **version.as_dict(),
        "previous_version": previous,
        "plan": plan.as_dict(),
        "field_changes": plantext.field_changes(plan),
        "changed_files": files,
        "jobs": [j["job_ref"] for j in manifest.get("jobs", [])],
        "description": manifest.get("description"),
    }


def manifest_at(repo: Any, sha: str) -> dict[str, Any]:
    data = gitstore.read_file(repo, sha, gitstore.MANIFEST)
    return manifests.load_yaml(data) if data else {"jobs": []}


def record_deploy(
    ctl: Controller, name: str, actor: audit.Actor, sha: str | None, detail: dict[str, Any]
) -> None:
    """A deploy in the audit log. The change itself is git's (the branch moved), so the event
    is written right after it, in its own transaction."""
    with ctl.db.session() as session:
        ws = workspaces.get(session, name)
        audit.record(session, actor, "deploy", ctl.clock.now(), ws, sha, detail)


def rollback_to(
    ctl: Controller, principal: Principal, name: str, sha: str, force: bool
) -> dict[str, Any]:
    """A new commit holding deployment `sha`'s tree, checked and reconciled like a deploy
    (deploy role; refused for a workspace linked to GitHub unless `force`)."""
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "deploy")
        isolation.check_deploy(principal, ctl.isolation, ctl.executor_of(ws), ctl.settings)
        link = session.scalar(select(GithubLink).where(GithubLink.workspace_id == ws.id))
        source = None if link is None else rollback.Source(link.repo, link.branch)
        key = ctl.keys.sealing_key(session, ws)
        keys = rollback.Keys(key.kid, key.public_key, key.fp_key, ctl.keys.identities(session, ws))
    done = rollback.rollback(ctl, name, sha, keys, source, force)
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        if done.status == "rolled_back":
            actor = audit.token(session, principal.token_id)
            detail = {"rollback_to": done.target, "previous": done.previous}
            audit.record(session, actor, "deploy", ctl.clock.now(), ws, done.commit, detail)
        versions = {
            "deployment_version": ws.deployment_version,
            "configuration_version": ws.configuration_version,
        }
    return {"workspace": name, **done.as_dict(), **versions}
