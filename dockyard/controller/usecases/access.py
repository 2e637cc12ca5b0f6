"""Finding what a request names (a workspace, a run, a workspace's repository) and checking
the caller's right to it: the first step of every use case.

A token limited to one workspace is told "not found" for every other workspace, exactly as
for one that does not exist, so it learns nothing about them.
"""

from typing import Any

from sqlalchemy.orm import Session

from dockyard.controller import auth, gitstore, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import NotFound

Principal = auth.Principal


def workspace(session: Session, principal: Principal, name: str, role: str) -> Workspace:
    try:
        ws = workspaces.get(session, name)
    except NotFound:
        # a token limited to one workspace learns nothing about the others
        principal.require(role, -1)
        raise
    principal.require(role, ws.id)
    return ws


def workspace_by_id(session: Session, principal: Principal, ws_id: int, role: str) -> Workspace:
    ws = session.get(Workspace, ws_id)
    assert ws is not None
    principal.require(role, ws.id)
    return ws


def run(session: Session, run_id: str) -> tuple[Run, Job]:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    job = session.get(Job, run.job_id)
    assert job is not None
    return run, job


def repo(ctl: Controller, name: str) -> Any:
    return gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, name))
