"""Reconcile a workspace's jobs with the manifest at its git HEAD.

plan(manifest@reconciled, manifest@HEAD) is applied in one transaction together with the new
reconciled SHA, so a crash leaves either the old or the new state; the active job rows are
therefore always manifest@reconciled, and their stored fingerprints stand in for it (the old
manifest is never parsed again). Unchanged jobs cost no row writes. Triggered at the end of
every push and by a periodic sweep (HEAD ≠ reconciled). A push to any controller reconciles
once: the write transaction locks the workspace row (`FOR UPDATE` on PostgreSQL) and checks
the reconciled SHA again under the lock. Git is read (the manifest, the
version history) before the write transaction opens; listeners hear `Deployed` after it
commits.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import Clock, SystemClock
from dockyard.controller import gitstore, manifests, planning, workspaces
from dockyard.controller.leases import LeaseLost
from dockyard.controller.lifecycle.events import Deployed, Events
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Reconciliation, Workspace
from dockyard.errors import DockyardError

log = logging.getLogger(__name__)
Fence = Callable[[Session], None]
"""Run first in each write transaction of a leased caller (`leases.Fence`): raises to refuse
the write when the caller no longer holds its lease."""


@dataclass(frozen=True, slots=True)
class Outcome:
    sha: str | None
    result: dict[str, Any]
    changed: bool


class Reconciler:
    def __init__(
        self,
        db: Database,
        repos_dir: Path,
        events: Events | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.repos_dir = repos_dir
        self.events = events or Events()
        self.clock: Clock = clock or SystemClock()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def reconcile(
        self, name: str, checked: manifests.Checked | None = None, fence: Fence | None = None
    ) -> Outcome:
        """Apply HEAD's manifest. `checked` (what a server-side deploy already parsed and
        validated) is used instead of parsing again only when HEAD's manifest blob is it.
        `fence` (the sweep's lease) refuses the writes once the lease is lost."""
        with self._lock(name):
            return self._reconcile(name, checked, fence)

    def sweep(self, fence: Fence | None = None) -> None:
        """Reconcile every workspace whose HEAD moved; stops at a lost lease (`LeaseLost`)."""
        with self.db.session() as session:
            names = [w.name for w in workspaces.list_all(session)]
        for name in names:
            try:
                self.reconcile(name, fence=fence)
            except LeaseLost:
                raise
            except DockyardError:  # recorded on the workspace
                continue

    def _reconcile(
        self, name: str, checked: manifests.Checked | None, fence: Fence | None = None
    ) -> Outcome:
        repo = gitstore.open_repo(workspaces.repo_path(self.repos_dir, name))
        head = gitstore.head_sha(repo)
        with self.db.session() as session:
            ws = workspaces.get(session, name)
            if head is None or head == ws.reconciled_sha:
                return Outcome(head, _recorded(session, ws, head), False)
        try:
            new = _manifest(repo, head, checked)
        except DockyardError as exc:
            self._record_error(name, f"{head[:12]}: {exc.message}", fence)
            raise
        versions = (
            gitstore.latest_version(repo, head, gitstore.DEPLOYMENT_PATHS),
            gitstore.latest_version(repo, head, gitstore.CONFIGURATION_PATHS),
        )
        with self.db.session() as session:
            if fence is not None:
                fence(session)
            # the row locked: a controller reconciling the same HEAD waits here, then finds
            # it done (the process lock above orders this process's threads only)
            ws = workspaces.get(session, name, for_update=True)
            if head == ws.reconciled_sha:  # another controller got there first
                return Outcome(head, _recorded(session, ws, head), False)
            # the active job rows are exactly manifest@reconciled (each reconcile applies the
            # whole plan in one transaction), so their fingerprints stand in for parsing it
            rows = session.execute(
                select(Job.job_ref, Job.fingerprint).where(
                    Job.workspace_id == ws.id, Job.status == "active"
                )
            )
            deployed = {row[0]: row[1] for row in rows}
            plan = planning.plan_from_fingerprints(deployed, new)
            result = _apply(session, ws, versions, head, plan, self.clock.now())
            self.events.publish(session, Deployed(name, head))
        log.info(
            "reconciled",
            extra={
                "action": "reconcile",
                "workspace": name,
                "sha": head,
                "summary": plan.summary(),
            },
        )
        return Outcome(head, result, True)

    def _record_error(self, name: str, message: str, fence: Fence | None = None) -> None:
        """Kept on the workspace (in its own transaction) for `info` and a waiting deploy."""
        with self.db.session() as session:
            if fence is not None:
                fence(session)
            ws = workspaces.get(session, name)
            if ws.reconcile_error != message:
                ws.reconcile_error = message
                log.warning(
                    "reconcile failed",
                    extra={"action": "reconcile", "workspace": name, "error": message},
                )


def _manifest(
    repo: pygit2.Repository, sha: str, checked: manifests.Checked | None
) -> dict[str, Any]:
    try:
        blob = repo[gitstore.commit_at(repo, sha).tree[gitstore.MANIFEST].id]
    except KeyError:
        blob = None
    if not isinstance(blob, pygit2.Blob):
        raise DockyardError(f"commit {sha[:12]} has no manifest.yaml")
    if checked is not None and checked.holds(blob.id):
        return checked.manifest
    return manifests.load_yaml(bytes(blob.data))


def _recorded(session: Session, ws: Workspace, sha: str | None) -> dict[str, Any]:
    if sha is None:
        return {}
    row = session.scalar(
        select(Reconciliation).where(
            Reconciliation.workspace_id == ws.id, Reconciliation.sha == sha
        )
    )
    return dict(row.result) if row else {}


def _apply(
    session: Session,
    ws: Workspace,
    versions: tuple[str | None, str | None],
    head: str,
    plan: planning.Plan,
    now: datetime,
) -> dict[str, Any]:
    touched = [c for c in plan.changes if c.kind != "unchanged"]
    refs = [c.job_ref for c in touched]
    rows = (
        {
            j.job_ref: j
            for j in session.scalars(
                select(Job).where(Job.workspace_id == ws.id, Job.job_ref.in_(refs))
            )
        }
        if refs
        else {}
    )
    changed: list[tuple[Job, bool]] = []
    for change in touched:
        row = rows.get(change.job_ref)
        if change.kind == "archived":
            if row is not None and row.status != "archived":
                row.status, row.archived_at, row.updated_sha = "archived", now, head
            continue
        assert change.new is not None
        reactivated = row is not None and row.status == "archived"
        if row is None:
            row = Job(
                workspace_id=ws.id,
                job_ref=change.job_ref,
                created_sha=head,
                created_at=now,
                runs_created=0,
            )
            session.add(row)
        row.definition = change.new
        row.job_type = change.new["entry_point"]["job_type"]
        row.fingerprint = manifests.job_fingerprint(change.new)
        row.status, row.archived_at, row.updated_sha, row.updated_at = "active", None, head, now
        changed.append((row, reactivated))
    if changed:
        schedules.sync(session, changed, now)
    deployment, configuration = versions
    result: dict[str, Any] = {
        **plan.as_dict(),
        "sha": head,
        "summary": plan.summary(),
        "deployment_version": deployment,
        "configuration_version": configuration,
    }
    session.add(
        Reconciliation(
            workspace_id=ws.id,
            sha=head,
            previous_sha=ws.reconciled_sha,
            applied_at=now,
            result=result,
            deployment_version=deployment,
            configuration_version=configuration,
        )
    )
    ws.reconciled_sha, ws.reconciled_at, ws.reconcile_error = head, now, None
    ws.deployment_version, ws.configuration_version = deployment, configuration
    return result
