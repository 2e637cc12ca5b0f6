"""Workspaces: list, create, show (with job and active-run counts) and choose the executor."""

import functools
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dockyard.controller import audit, gitstore, manifests, runs, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import ACTIVE
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.controller.usecases import access, github, github_oidc
from dockyard.controller.usecases.access import Principal


def workspace_dict(ws: Workspace) -> dict[str, Any]:
    return {
        "name": ws.name,
        "created_at": ws.created_at.isoformat(),
        "reconciled_sha": ws.reconciled_sha,
        "deployment_version": ws.deployment_version,
        "configuration_version": ws.configuration_version,
        "reconcile_error": ws.reconcile_error,
        "executor": ws.executor,
    }


def list_workspaces(
    ctl: Controller, principal: Principal, describe: bool = False
) -> list[dict[str, Any]]:
    """The workspaces the principal may see; with `describe`, each with its `description`
    (a read of git per workspace the first time a version is asked, so not for the
    dashboard's selector on every page)."""
    with ctl.db.session() as session:
        found = [
            workspace_dict(ws)
            for ws in workspaces.list_all(session)
            if principal.workspace_id in (None, ws.id)
        ]
    if describe:
        for info in found:
            info["description"] = description(ctl, info["name"], info["deployment_version"])
    return found


DESCRIPTION_MAX = 200


def description(ctl: Controller, name: str, version: str | None) -> str | None:
    """The workspace's description: what its deployed `__deployment__` module's docstring
    says first (dlt puts it in the manifest as `description`), cut to 200 characters."""
    if version is None:
        return None
    repo_dir = str(workspaces.repo_path(ctl.settings.repos_dir, name))
    return _description_at(repo_dir, version)


@functools.lru_cache(maxsize=256)  # a version never changes: read its manifest once
def _description_at(repo_dir: str, sha: str) -> str | None:
    data = gitstore.read_file(gitstore.open_repo(Path(repo_dir)), sha, gitstore.MANIFEST)
    if not data:
        return None
    text = manifests.load_yaml(data).get("description")
    if not isinstance(text, str) or not text.strip():
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= DESCRIPTION_MAX else flat[: DESCRIPTION_MAX - 1] + "…"


def create_workspace(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    principal.require("admin")
    with ctl.db.session() as session:
        ws = workspaces.create(session, ctl.settings.repos_dir, name, ctl.hooks)
        ctl.keys.ensure(session, ws)
        actor = audit.token(session, principal.token_id)
        audit.record(session, actor, "workspace.create", ctl.clock.now(), ws, ws.name)
        return workspace_dict(ws)


def workspace_info(ctl: Controller, principal: Principal, name: str) -> dict[str, Any]:
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "read")
        info = workspace_dict(ws)
        info["dlthub_id"] = workspaces.dlthub_id(ws.id, ws.name)
        # counted, not loaded: a 1,000-job workspace's definitions cost tens of ms to load,
        # and a client waiting for a deploy (bench/github_webhooks.py) polls this
        info["jobs"] = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.workspace_id == ws.id, Job.status == "active")
        )
        info["active_runs"] = len(
            list(session.scalars(runs.runs_query(ws).where(Run.status.in_(ACTIVE))))
        )
        info["github"] = github.summary(ctl, session, ws)
        info["github_oidc"] = [
            github_oidc.rule_dict(r, ws.name) for r in github_oidc.rules(session, ws)
        ]
    info["head_sha"] = gitstore.head_sha(access.repo(ctl, name))
    info["description"] = description(ctl, name, info["deployment_version"])
    info["effective_executor"] = info["executor"] or ctl.executor.default
    return info


def set_executor(
    ctl: Controller, principal: Principal, name: str, executor: str | None
) -> dict[str, Any]:
    """Where the workspace's runs execute from now on (None: the server's default)."""
    with ctl.db.session() as session:
        ws = access.workspace(session, principal, name, "admin")
        if executor is not None:
            ctl.executor.get(executor)  # refuses an unknown name
        ws.executor = executor
        info = workspace_dict(ws)
    info["effective_executor"] = executor or ctl.executor.default
    return info
