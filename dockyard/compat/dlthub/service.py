"""The dlthub client's reads and actions, each through what dockyard's own API does.

Triggers, cancels, pauses and log pages call `controller.usecases` (the same role checks,
audit records and lifecycle writes as `dockyard launch`, `cancel`, `job pause`); the reads
here only select rows of one workspace and put them in the client's shapes (`shapes`).

A request names its workspace by `ids.workspace_id`: a key limited to one workspace is
checked against that one's id alone; any other key finds it among the workspaces' ids and
names (one small read, kept per process). Jobs are found among their workspace's jobs.
"""

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pygit2
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard import errors
from dockyard.clock import isoformat
from dockyard.compat.dlthub import deploying, formparts, ids, shapes
from dockyard.compat.dlthub.shapes import Json, VersionView, WorkspaceView
from dockyard.controller import auth, gitstore, runs, usecases, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import TERMINAL
from dockyard.controller.store.models import Job, Run, Workspace

Principal = auth.Principal
KIND_PATHS = {
    "deployment": gitstore.DEPLOYMENT_PATHS,
    "configuration": gitstore.CONFIGURATION_PATHS,
}
TOKEN_LIFETIME_S = 3600
OUTCOMES = {
    "added": "created",
    "updated": "updated",
    "unchanged": "unchanged",
    "archived": "archived",
}
"""dockyard's plan words → the client's `JobDeployOutcome` (strict)."""


@dataclass
class Compat:
    """The service for one server: its controller and what it keeps between requests (the
    workspace ids, and each version's file counts, which never change)."""

    ctl: Controller
    _ws_ids: dict[str, int] = field(default_factory=dict)
    _sizes: dict[tuple[str, str, str], "Sizes"] = field(default_factory=dict)
    _histories: dict[tuple[str, str], tuple[str | None, list[tuple[str, str]]]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- workspaces -----------------------------------------------------------------------

    def workspace(self, session: Session, who: Principal, ws_uuid: str, role: str) -> Workspace:
        """The workspace `ws_uuid` names, if `who` may act on it with `role`."""
        if not ids.is_uuid(ws_uuid):
            raise errors.InvalidInput(f"workspace id {ws_uuid!r} is not a UUID")
        if who.workspace_id is not None:
            own = session.get(Workspace, who.workspace_id)
            if own is None or ids.workspace_id(own.id, own.name) != str(_norm(ws_uuid)):
                raise errors.Forbidden(_other_workspace(own, ws_uuid))
            who.require(role, own.id)
            return own
        ws = self._find_workspace(session, str(_norm(ws_uuid)))
        who.require(role, ws.id)
        return ws

    def _find_workspace(self, session: Session, ws_uuid: str) -> Workspace:
        with self._lock:
            row_id = self._ws_ids.get(ws_uuid)
        if row_id is None:
            found = {
                ids.workspace_id(i, n): i
                for i, n in session.execute(select(Workspace.id, Workspace.name))
            }
            with self._lock:
                self._ws_ids = found
            row_id = found.get(ws_uuid)
        ws = session.get(Workspace, row_id) if row_id is not None else None
        if ws is None:
            raise errors.NotFound(f"no workspace {ws_uuid}; `dockyard workspace info` shows its id")
        return ws

    def view(self, ws: Workspace, dataplane_url: str) -> WorkspaceView:
        description = usecases.workspaces.description(self.ctl, ws.name, ws.deployment_version)
        return WorkspaceView.of(ws, dataplane_url, description)

    def get_workspace(self, who: Principal, ws_uuid: str, dp_url: str) -> Json:
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            return shapes.workspace(self.view(ws, dp_url))

    def organizations(self, who: Principal) -> Json:
        return shapes.page([shapes.organization()], 100, 0, 1)

    def me(self, who: Principal, org_id: str, dp_url: str) -> Json:
        if not ids.is_uuid(org_id) or str(_norm(org_id)) != ids.ORGANIZATION_ID:
            raise errors.NotFound(f"no organization {org_id}")
        role = {"admin": "owner", "deploy": "developer"}.get(who.role, "viewer")
        with self.ctl.db.session() as session:
            rows = [ws for ws in workspaces.list_all(session) if who.workspace_id in (None, ws.id)]
            members = [
                {"role": role, "workspace": shapes.workspace(WorkspaceView.of(ws, dp_url))}
                for ws in rows
            ]
        return {
            "email": f"token-{who.token_id}@dockyard.invalid",
            "user_id": ids.principal_id(who.token_id),
            "organization_membership_id": ids.principal_id(who.token_id),
            "role": "owner" if who.role == "admin" else "member",
            "organization": shapes.organization(),
            "workspace_memberships": members,
        }

    def dataplane_token(self, who: Principal, ws_uuid: str, key: str) -> Json:
        """The data plane is this server: the caller's own key serves it (revoking the key
        ends its log reads at once; there is no second secret to keep or sign with)."""
        with self.ctl.db.session() as session:
            self.workspace(session, who, ws_uuid, "read")
        now = self.ctl.clock.now()
        return {"token": key, "expires_at": int(now.timestamp()) + TOKEN_LIFETIME_S}

    # --- jobs -----------------------------------------------------------------------------

    def jobs_of(self, session: Session, ws: Workspace) -> dict[str, Job]:
        """The workspace's jobs (archived too) by their client id."""
        return {
            ids.job_id(ws.id, j.id, j.job_ref): j
            for j in runs.jobs(session, ws, include_archived=True)
        }

    def job_of(self, session: Session, ws: Workspace, job_uuid: str) -> Job:
        if ids.is_uuid(job_uuid):
            found = self.jobs_of(session, ws).get(str(_norm(job_uuid)))
            if found is not None:
                return found
        raise errors.NotFound(f"no job {job_uuid} in workspace {ws.name}")

    def list_jobs(
        self,
        who: Principal,
        ws_uuid: str,
        dp_url: str,
        ref: str | None,
        archived: bool | None,
        limit: int,
        offset: int,
    ) -> Json:
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            picked = [
                j
                for j in runs.jobs(session, ws, include_archived=True)
                if (ref is None or j.job_ref == ref)
                and (archived is None or (j.status != "active") == archived)
            ]
            render = self._job_renderer(ws, dp_url)
            items = [render(j) for j in picked[offset : offset + limit]]
            return shapes.page(items, limit, offset, len(picked))

    def get_job(self, who: Principal, ws_uuid: str, dp_url: str, job_uuid: str) -> Json:
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            return self._job_renderer(ws, dp_url)(self.job_of(session, ws, job_uuid))

    def pause(self, who: Principal, ws_uuid: str, dp_url: str, job_uuid: str, on: bool) -> Json:
        """`dockyard job pause|resume`: the job's timed triggers stop or fire again."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            name, ref = ws.name, self.job_of(session, ws, job_uuid).job_ref
        usecases.jobs.pause_job(self.ctl, who, name, ref, paused=on)
        return self.get_job(who, ws_uuid, dp_url, job_uuid)

    def _job_renderer(self, ws: Workspace, dp_url: str) -> Callable[[Job], Json]:
        view = self.view(ws, dp_url)
        numbers = self._numbers(ws, "deployment")
        config_names = self.ctl.lifecycle.config_names(ws)

        def render(j: Job) -> Json:
            profile = shapes.job_profile(j, config_names)
            return shapes.job(view, j, numbers.get(j.updated_sha, 1), profile)

        return render

    # --- deploy ---------------------------------------------------------------------------

    def issue_upload(
        self, who: Principal, ws_uuid: str, kind: str, base_url: str, key: str
    ) -> Json:
        """A new upload's id and where to post it: this server, at the path the client
        requires (`/api/v1/workspaces/<ws>/<kind>s/<id>/-upload`, no prefix). The upload is
        authenticated by the caller's own key, as the data plane is."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            ws_id = ids.workspace_id(ws.id, ws.name)
        upload_id = str(uuid.uuid4())
        url = f"{base_url}/api/v1/workspaces/{ws_id}/{kind}s/{upload_id}/-upload"
        return {f"{kind}_id": upload_id, "upload_url": url, "upload_token": key}

    def upload(
        self,
        who: Principal,
        ws_uuid: str,
        kind: str,
        upload_id: str,
        content_type: str,
        body: bytes,
    ) -> Json:
        """A code or configuration package, checked and staged (secrets sealed first); the
        `-deploy` that follows makes it a version."""
        if not ids.is_uuid(upload_id):
            raise errors.InvalidInput(f"upload id {upload_id!r} is not a UUID")
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            view = self.view(ws, "")
        form = formparts.parts(content_type, body)
        if "file" not in form:
            raise errors.InvalidInput("the upload has no `file` part (the package)")
        part: deploying.Kind = "code" if kind == "deployment" else "config"
        staged = deploying.stage(
            self.ctl,
            who,
            ws.name,
            part,
            upload_id,
            form["file"],
            form.get("requirements_file", b""),
        )
        number = len(self._history(ws.name, kind)) + 1
        version = VersionView(
            staged.sha,
            number,
            isoformat(staged.created_at) or shapes.EPOCH,
            staged.file_count,
            staged.size_bytes,
            staged.content_hash,
            staged.requirements_size_bytes,
            staged.profiles,
        )
        shaped = (shapes.deployment if kind == "deployment" else shapes.configuration)(
            view, version
        )
        return {**shaped, "id": upload_id}

    def deploy(self, who: Principal, ws_uuid: str, dp_url: str, body: dict[str, Any]) -> Json:
        """`-deploy`: the staged uploads (or what is deployed, for a part not uploaded) built
        into one commit and reconciled, as `dockyard deploy` does (`deploying.deploy`); in a
        dry run the client's manifest planned against the deployed one. The receipt lists
        each job with its outcome; unchanged jobs are the client's `skipped`."""
        dry_run = bool(body.get("dry_run"))
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            name = ws.name
        done = deploying.deploy(self.ctl, who, name, body)
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            render = self._job_renderer(ws, dp_url)
            rows: dict[str, Job] = {}
            for row in sorted(self.jobs_of(session, ws).values(), key=lambda j: j.id):
                if row.job_ref not in rows or row.status == "active":
                    rows[row.job_ref] = row
            view = self.view(ws, dp_url)
            succeeded: list[Json] = []
            skipped: list[Json] = []
            for change in done.plan.changes:
                found = rows.get(change.job_ref)
                if found is not None and not (dry_run and change.kind == "added"):
                    job = render(found)
                else:
                    job = shapes.planned_job(view, change.new or {}, self.ctl.clock.now())
                outcome = OUTCOMES[change.kind]
                (skipped if outcome == "unchanged" else succeeded).append(
                    {"job": job, "outcome": outcome}
                )
        return {
            "job_receipt": {"succeeded": succeeded, "skipped": skipped, "failed": []},
            "warnings": done.warnings,
            "deployment_module": body.get("deployment_module"),
        }

    # --- triggers -------------------------------------------------------------------------

    def trigger(self, who: Principal, ws_uuid: str, dp_url: str, body: dict[str, Any]) -> Json:
        """Jobs by id fire as `manual:<ref>` (dlt then fires the job's default trigger),
        selectors as given: both through dockyard's trigger, so a person's start is not held
        back by freshness gates, and concurrency and interval windows apply."""
        if body.get("profile"):
            raise errors.InvalidInput(
                "a profile override is not supported: dockyard runs each job with the profile"
                " its definition and the deployed configuration give"
            )
        job_ids = [str(i) for i in body.get("job_ids") or []]
        selectors = [str(s) for s in body.get("selectors") or []]
        if not job_ids and not selectors:
            raise errors.InvalidInput("give job_ids or selectors")
        failed: list[Json] = []
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            name, by_id = ws.name, self.jobs_of(session, ws)
        for job_uuid in job_ids:
            job = by_id.get(str(_norm(job_uuid))) if ids.is_uuid(job_uuid) else None
            if job is None:
                failed.append({"ref": job_uuid, "detail": f"no job {job_uuid}"})
            else:
                selectors.append(f"manual:{job.job_ref}")
        try:
            done = usecases.runs.trigger(
                self.ctl,
                who,
                name,
                selectors,
                bool(body.get("refresh")),
                bool(body.get("dry_run")),
            )
        except errors.NotFound:  # nothing matched: the client says so itself
            done = {"triggered": []}
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            return self._trigger_receipt(session, ws, dp_url, done["triggered"], failed)

    def _trigger_receipt(
        self,
        session: Session,
        ws: Workspace,
        dp_url: str,
        entries: Sequence[dict[str, Any]],
        failed: list[Json],
    ) -> Json:
        view = self.view(ws, dp_url)
        by_ref = {j.job_ref: j for j in runs.jobs(session, ws, include_archived=True)}
        succeeded: list[Json] = []
        skipped: list[Json] = []
        for entry in entries:
            job = by_ref[entry["job_ref"]]
            item: Json = {
                "job_id": ids.job_id(ws.id, job.id, job.job_ref),
                "job_ref": job.job_ref,
                "matched_triggers": [entry["matched_trigger"]],
                "trigger": entry["trigger"],
                "job_run_id": None,
                "job_run": None,
            }
            if entry["status"] == "skipped":
                reason = entry.get("skip_reason")
                item.update(status=ids.skip_status(reason), reasons=[reason] if reason else [])
                skipped.append(item)
                continue
            item["status"] = "triggered"
            row = session.get(Run, entry["run_id"]) if entry.get("run_id") else None
            if row is not None:
                item.update(job_run_id=row.id, job_run=shapes.run_brief(view, row, job))
            succeeded.append(item)
        return {"succeeded": succeeded, "skipped": skipped, "failed": failed}

    # --- runs -----------------------------------------------------------------------------

    def list_runs(
        self,
        who: Principal,
        ws_uuid: str,
        dp_url: str,
        job_uuid: str | None,
        number: int | None,
        statuses: Sequence[str],
        limit: int,
        offset: int,
    ) -> Json:
        """Newest first (the client takes `items[0]` as the latest run)."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            jobs = self.jobs_of(session, ws)
            query = runs.runs_query(ws)
            if job_uuid is not None:
                job = jobs.get(str(_norm(job_uuid))) if ids.is_uuid(job_uuid) else None
                query = query.where(Run.job_id == (job.id if job else -1))
            if number is not None:
                query = query.where(Run.number == number)
            if statuses:
                query = query.where(Run.status.in_([ids.TO_DOCKYARD.get(s, s) for s in statuses]))
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(Run.created_at.desc(), Run.number.desc(), Run.id.desc())
                .offset(offset)
                .limit(limit)
            )
            render = self._run_renderer(ws, dp_url, list(jobs.values()))
            return shapes.page([render(r) for r in rows], limit, offset, total)

    def get_run(self, who: Principal, ws_uuid: str, dp_url: str, run_id: str) -> Json:
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            row = self.run_of(session, ws, run_id)
            job = session.get(Job, row.job_id)
            assert job is not None
            return self._run_renderer(ws, dp_url, [job])(row)

    def run_of(self, session: Session, ws: Workspace, run_id: str) -> Run:
        row = session.get(Run, str(_norm(run_id))) if ids.is_uuid(run_id) else None
        if row is None or row.workspace_id != ws.id:
            raise errors.NotFound(f"no run {run_id} in workspace {ws.name}")
        return row

    def _run_renderer(
        self, ws: Workspace, dp_url: str, jobs: Sequence[Job]
    ) -> Callable[[Run], Json]:
        view = self.view(ws, dp_url)
        numbers = self._numbers(ws, "deployment")
        config_names = self.ctl.lifecycle.config_names(ws)
        by_id = {j.id: j for j in jobs}

        def render(row: Run) -> Json:
            job = by_id[row.job_id]
            profile = shapes.job_profile(job, config_names)
            return shapes.run(view, row, job, numbers.get(job.updated_sha, 1), profile)

        return render

    def result(self, who: Principal, ws_uuid: str, run_id: str) -> Json:
        """The result the run declared (`run.result(...)`: dlt's envelope, as its beacon sent
        it); 404 when it declared none, which the client says in its own words."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            row = self.run_of(session, ws, run_id)
            job = session.get(Job, row.job_id)
            if not isinstance(row.result, dict) or job is None:
                raise errors.NotFound(f"run {run_id} declared no result")
            return {"job_ref": job.job_ref, "type": "result", **row.result}

    def cancel_run(self, who: Principal, ws_uuid: str, dp_url: str, run_id: str) -> Json:
        """`dockyard job-run … cancel`: 409 for a run that already ended."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "deploy")
            rid = self.run_of(session, ws, run_id).id
        usecases.runs.cancel_run(self.ctl, who, rid)
        return self.get_run(who, ws_uuid, dp_url, rid)

    def cancel_runs(
        self, who: Principal, ws_uuid: str, run_ids: Sequence[str], dry_run: bool
    ) -> Json:
        succeeded: list[Json] = []
        skipped: list[Json] = []
        failed: list[Json] = []
        for run_id in run_ids:
            with self.ctl.db.session() as session:
                ws = self.workspace(session, who, ws_uuid, "deploy")
                try:
                    row, job = self.run_of(session, ws, run_id), None
                except errors.NotFound as exc:
                    failed.append({"ref": run_id, "detail": exc.message})
                    continue
                job = session.get(Job, row.job_id)
                assert job is not None
                item = {
                    "job_ref": job.job_ref,
                    "job_run_id": row.id,
                    "job_run_number": row.number,
                    "previous_status": ids.status(row.status),
                }
                ended = row.status in TERMINAL
            if ended:
                skipped.append(item)
                continue
            if not dry_run:
                try:
                    usecases.runs.cancel_run(self.ctl, who, row.id)
                except errors.Conflict:  # it ended meanwhile
                    skipped.append(item)
                    continue
            succeeded.append(item)
        return {"succeeded": succeeded, "skipped": skipped, "failed": failed}

    # --- deployments and configurations ---------------------------------------------------

    def versions(
        self,
        who: Principal,
        ws_uuid: str,
        kind: str,
        number: int | None,
        limit: int,
        offset: int,
    ) -> Json:
        """Newest first; `number` picks one version (1: the first deploy)."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            view = self.view(ws, "")
        history = self._history(ws.name, kind)
        picked = [
            (sha, len(history) - i)
            for i, (sha, _) in enumerate(history)
            if number is None or len(history) - i == number
        ]
        items = [
            self._version_json(view, kind, sha, n) for sha, n in picked[offset : offset + limit]
        ]
        return shapes.page(items, limit, offset, len(picked))

    def latest_version(self, who: Principal, ws_uuid: str, kind: str) -> Json:
        """The version the workspace runs (reconciled); 404 before its first deploy."""
        with self.ctl.db.session() as session:
            ws = self.workspace(session, who, ws_uuid, "read")
            view = self.view(ws, "")
            current = ws.deployment_version if kind == "deployment" else ws.configuration_version
        history = self._history(ws.name, kind)
        for i, (sha, _) in enumerate(history):
            if sha == current:
                found = self._version_json(view, kind, sha, len(history) - i)
                hashed = deploying.code_hash if kind == "deployment" else deploying.config_hash
                return {**found, "content_hash": hashed(self.ctl, ws.name, sha)}
        raise errors.NotFound(f"workspace {ws.name} has no {kind} yet; run `dockyard deploy`")

    def _version_json(self, view: WorkspaceView, kind: str, sha: str, number: int) -> Json:
        found = self._size(view.name, kind, sha)
        created = dict(self._history(view.name, kind)).get(sha) or shapes.EPOCH
        version = VersionView(
            sha,
            number,
            created,
            found.count,
            found.size,
            found.content_hash,
            found.requirements,
            found.profiles,
        )
        if kind == "deployment":
            return shapes.deployment(view, version)
        return shapes.configuration(view, version)

    def _repo(self, name: str) -> pygit2.Repository:
        return gitstore.open_repo(workspaces.repo_path(self.ctl.settings.repos_dir, name))

    def _history(self, name: str, kind: str) -> list[tuple[str, str]]:
        """(sha, created_at) of each version of `kind`, newest first (first parent); walked
        again only when `main` moved (`dlthub run -f` asks for its run every 2 s)."""
        repo = self._repo(name)
        head = gitstore.head_sha(repo)
        with self._lock:
            known = self._histories.get((name, kind))
        if known is not None and known[0] == head:
            return known[1]
        found = [
            (v.sha, v.created_at.isoformat()) for v in gitstore.history(repo, KIND_PATHS[kind])
        ]
        with self._lock:
            self._histories[(name, kind)] = (head, found)
        return found

    def _numbers(self, ws: Workspace, kind: str) -> dict[str, int]:
        """Each version's number: its place on the first-parent line, oldest = 1."""
        history = self._history(ws.name, kind)
        return {sha: len(history) - i for i, (sha, _) in enumerate(history)}

    def _size(self, name: str, kind: str, sha: str) -> "Sizes":
        """Files, bytes, content hash, requirements bytes and profiles of one version (kept:
        a version never changes)."""
        key = (name, kind, sha)
        with self._lock:
            known = self._sizes.get(key)
        if known is not None:
            return known
        repo = self._repo(name)
        prefix = gitstore.CODE if kind == "deployment" else gitstore.CONFIG
        files = list(gitstore.iter_files(repo, sha, prefix))
        requirements = gitstore.read_file(repo, sha, gitstore.REQUIREMENTS) or b""
        profiles = tuple(sorted({ids.profile_of(p) for p, _ in files} - {""}))
        found = Sizes(
            len(files),
            sum(len(e.data) for _, e in files),
            ids.content_hash((p, e.data) for p, e in files),
            len(requirements),
            profiles,
        )
        with self._lock:
            self._sizes[key] = found
        return found


@dataclass(frozen=True, slots=True)
class Sizes:
    count: int
    size: int
    content_hash: str
    requirements: int
    profiles: tuple[str, ...]


def _norm(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def _other_workspace(own: Workspace | None, asked: str) -> str:
    if own is None:
        return f"this API key's workspace no longer exists; it cannot use {asked}"
    return (
        f"this API key is limited to workspace {own.name!r}"
        f" (RUNTIME__WORKSPACE_ID={ids.workspace_id(own.id, own.name)}), not {asked};"
        " make a key for that workspace (`dockyard token create NAME --dlthub -w WORKSPACE`)"
    )


def page_for(compat: Compat, ws_uuid: str, kind: str | None = None, ref: str = "") -> str:
    """The dashboard page (`/ui/w/…`) of a link the client prints (`/w/<ws>[/runs/<id>|
    /jobs/<ref or id>]`); the page itself asks the visitor to sign in."""
    if not ids.is_uuid(ws_uuid):
        raise errors.NotFound(f"no workspace {ws_uuid}")
    with compat.ctl.db.session() as session:
        ws = compat._find_workspace(session, str(_norm(ws_uuid)))
        base = f"/ui/w/{quote(ws.name, safe='')}"
        if kind == "runs":
            return f"{base}/runs/{quote(compat.run_of(session, ws, ref).id, safe='')}"
        if kind == "jobs":
            job_ref = ref if not ids.is_uuid(ref) else compat.job_of(session, ws, ref).job_ref
            return f"{base}/jobs/{quote(job_ref, safe='')}"
        return base
