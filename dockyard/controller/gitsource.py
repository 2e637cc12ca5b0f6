"""Deploy a commit of a workspace's source repository (GitHub, or any git host over smart
HTTP) from the server: what the webhook processor and the sweeper call.

The branch head is fetched now, whatever a delivery said (order-free: a late or replayed
delivery never moves a workspace back); its manifest is built the way `dockyard deploy` builds
it (`sourcebuild`), the commit's files go through the receive hook's own checks
(`deployfiles`, `pushrules`, `prereceive`) before anything is written, and the commit lands on
the workspace's `main` exactly like a pushed deploy, with a `Source-Commit: <repo>@<sha>`
trailer that `deployment list` shows. A bad commit changes nothing: the outcome says why in
one line, and jobs keep running the previous version.
"""

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pygit2
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import crypto
from dockyard.controller import (
    deployfiles,
    gitstore,
    manifests,
    planning,
    plantext,
    prereceive,
    pushrules,
    schedulepreview,
    sourcecontainer,
    sourcemirror,
    workspaces,
)
from dockyard.controller.assembly import Controller
from dockyard.controller.gitstore import FileEntry
from dockyard.controller.sourcebuild import Builder
from dockyard.controller.store.models import Job, Workspace
from dockyard.errors import Conflict, DockyardError, InvalidInput

log = logging.getLogger(__name__)
Status = Literal["deployed", "unchanged", "failed"]
# how far back the workspace's history is searched for the last `Source-Commit:` trailer
TRAILER_SEARCH = 1000
WHO = pygit2.Signature("dockyard", "dockyard@localhost")


@dataclass(frozen=True, slots=True)
class GitSource:
    url: str  # https://… (http:// only to loopback)
    branch: str = "main"
    path: str = ""  # the workspace's folder inside the repository
    credential: Callable[[], str | None] = lambda: None  # a token, or None: anonymous
    name: str | None = None  # how the trailer names the repository (OWNER/NAME); default: url

    @property
    def label(self) -> str:
        return self.name or self.url


@dataclass(frozen=True, slots=True)
class SourceDeploy:
    status: Status
    workspace_sha: str | None  # the workspace's HEAD after this call
    source_sha: str | None  # the source commit considered
    summary: str  # the plan ("2 added, 1 updated") when deployed
    reason: str  # why unchanged or failed; what was deployed otherwise
    previous_sha: str | None = None  # the workspace's HEAD before a deploy
    plan: planning.Plan | None = None  # when deployed
    schedules: tuple[dict[str, Any], ...] = ()  # its schedule changes and next runs

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "workspace_sha": self.workspace_sha,
            "source_sha": self.source_sha,
            "summary": self.summary,
            "reason": self.reason,
        }


def deploy_from_git(
    ctl: Controller, workspace: str, source: GitSource, sha: str | None = None
) -> SourceDeploy:
    """Deploy `sha` (default: the branch head as fetched now) of `source` to `workspace`."""
    sources_dir = ctl.settings.data_dir / "sources"
    with sourcemirror.locked(sources_dir, workspace):
        repo = gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, workspace))
        head = gitstore.head_sha(repo)
        target: str | None = None
        try:
            mirror = sourcemirror.Mirror.open(sources_dir, workspace, source.url, source.branch)
            tip = mirror.fetch(source.credential, ctl.settings.push_limit)
            target = _target(mirror, tip, sha)
            done = _already(mirror, repo, head, target, source)
            if done is not None:
                return done
            files = sourcemirror.files_at(
                mirror.repo, mirror.commit(target), source.path, ctl.settings.max_workspace_bytes
            )
            outcome = _deploy(ctl, workspace, repo, head, files, target, source)
        except DockyardError as exc:
            log.info(
                "source commit refused",
                extra={"action": "deploy_from_git", "workspace": workspace, "reason": exc.message},
            )
            return SourceDeploy("failed", head, target, "", exc.message)
        mirror.mark_deployed(target)
        return outcome


def _target(mirror: sourcemirror.Mirror, tip: str, sha: str | None) -> str:
    """The commit to deploy: the head, or `sha` when it is on the branch."""
    if sha is None:
        return tip
    if not mirror.has(sha) or not mirror.contains(tip, sha):
        raise InvalidInput(
            f"commit {sha[:12]} is not on branch {mirror.branch} of the source repository"
        )
    return sha


def _already(
    mirror: sourcemirror.Mirror,
    repo: pygit2.Repository,
    head: str | None,
    target: str,
    source: GitSource,
) -> SourceDeploy | None:
    """`unchanged` when `target` is the deployed source commit or older than it."""
    for last in (last_source(repo, head, source.label), mirror.deployed()):
        if last is not None and mirror.has(last) and mirror.contains(last, target):
            newer = "" if last == target else f" (its newer {last[:12]} is)"
            return SourceDeploy(
                "unchanged", head, target, "", f"{target[:12]} is already deployed{newer}"
            )
    return None


def last_source(repo: pygit2.Repository, head: str | None, label: str) -> str | None:
    """The newest `Source-Commit:` of `label` on the workspace's history (first parent)."""
    commit = None if head is None else gitstore.commit_at(repo, head)
    for _ in range(TRAILER_SEARCH):
        if commit is None:
            return None
        found = gitstore.source_commit(commit.message)
        if found is not None:
            name, _, sha = found.rpartition("@")
            return sha if name == label else None
        commit = commit.parents[0] if commit.parents else None
    return None


@dataclass(frozen=True, slots=True)
class Built:
    """A source commit's deployment, checked as a deploy checks it, not yet written."""

    plan: planning.Plan
    old: dict[str, Any] | None  # the deployed manifest it was planned against (or its jobs)
    manifest: dict[str, Any]
    files: dict[str, FileEntry]  # the workspace commit's files (manifest.yaml, code/, config/)
    kid: str  # the workspace's current key: every secret is sealed for it
    checked: manifests.Checked  # files[manifest.yaml] parsed and validated, as the hook does


def build(
    ctl: Controller,
    workspace: str,
    repo: pygit2.Repository,
    head: str | None,
    source_files: dict[str, FileEntry],
    path: str = "",
) -> Built:
    """The steps a deploy and a plan share: the manifest built in the commit's own
    environment, the schema, dlt's checks, the plan against the deployed manifest, the
    commit's files and their secrets sealed for the current key. The manifest bytes to be
    committed are parsed and validated here, once: the hook's checks and the reconciler
    reuse that result for the blob with those bytes (`manifests.Checked`)."""
    with ctl.db.session() as session:
        ws = workspaces.get(session, workspace)
        ws_id, current_kid = ws.id, ctl.keys.sealing_key(session, ws).kid
        executor = ctl.executor_of(ws)
        deployed = _deployed_jobs(session, ws, head)
    builder = Builder(
        ctl.settings.data_dir / "source-envs",
        ctl.settings.data_dir / "shimlib",
        ctl.isolation,
        ctl.settings.max_workspace_bytes,
        sourcecontainer.in_container(ctl.executor.get(executor)),
    )
    with builder.inspect(source_files, ws_id) as seen:
        schema_valid = manifests.canonical(seen.manifest)
        manifests.validate_schema(schema_valid)  # dlt's own validator ran inside the worker
        old = _planned_against(repo, head, deployed, schema_valid)
        plan, manifest, files = deployfiles.planned(seen, old, schema_valid)
    deployfiles.check_commit(files, manifest)
    # what the hook checks (`load_yaml`, `validate`), on the very bytes to be committed,
    # before anything is written
    checked = manifests.checked(files[gitstore.MANIFEST].data, schema_valid)
    check_sealed(files, path, workspace, current_kid)
    return Built(plan, old, manifest, files, current_kid, checked)


def _deployed_jobs(session: Session, ws: Workspace, head: str | None) -> list[Any] | None:
    """The deployed manifest's jobs as its job rows hold them, when the workspace is
    reconciled at `head`: each reconcile applies a whole manifest in one transaction, so the
    active rows are that manifest's jobs (the reconciler plans against them too). None when
    they may not be (no HEAD, or HEAD not reconciled yet)."""
    if head is None or ws.reconciled_sha != head:
        return None
    rows = session.scalars(
        select(Job.definition)
        .where(Job.workspace_id == ws.id, Job.status == "active")
        .order_by(Job.id)
    )
    return list(rows)


def _planned_against(
    repo: pygit2.Repository,
    head: str | None,
    deployed: list[Any] | None,
    manifest: dict[str, Any],
) -> dict[str, Any] | None:
    """What the plan diffs `manifest` against: the deployed jobs from their rows (parsing a
    1,000-job manifest costs about half a second), or HEAD's manifest parsed when the rows
    may not stand for it, and when no job changes (then an equal manifest keeps HEAD's
    blob byte for byte: `deployfiles.planned`)."""
    if deployed is not None:
        jobs = {"jobs": deployed}
        if not planning.plan(jobs, manifest).is_noop:
            return jobs
    return deployed_manifest(repo, head)


def _deploy(
    ctl: Controller,
    workspace: str,
    repo: pygit2.Repository,
    head: str | None,
    source_files: dict[str, FileEntry],
    sha: str,
    source: GitSource,
) -> SourceDeploy:
    built = build(ctl, workspace, repo, head, source_files, source.path)
    plan = built.plan
    schedules = tuple(_schedules(ctl, workspace, built))  # read before reconcile changes them
    trailer = f"{gitstore.SOURCE_TRAILER}: {source.label}@{sha}"
    new = commit_files(repo, built.files, head, deployfiles.commit_message(plan) + f"\n{trailer}\n")
    if new is None:
        reason = f"{sha[:12]} holds what is deployed already"
        return SourceDeploy("unchanged", head, sha, plan.summary(), reason)
    checked = check_as_hook(ctl, repo, new, built.kid, built.checked)
    if not gitstore.move_branch(repo, new, head):
        raise Conflict("another deploy landed first; the next delivery or sweep deploys again")
    ctl.reconciler.reconcile(workspace, checked)
    log.info(
        "source commit deployed",
        extra={"action": "deploy_from_git", "workspace": workspace, "sha": new, "source": sha},
    )
    reason = f"deployed {source.label}@{sha[:12]} as {new[:12]}"
    return SourceDeploy("deployed", new, sha, plan.summary(), reason, head, plan, schedules)


def _schedules(ctl: Controller, workspace: str, built: Built) -> list[dict[str, Any]]:
    """The plan's schedule changes with their next fire times, as `deploy --dry-run` shows
    them (the same `schedulepreview`; nothing is written)."""
    jobs = plantext.to_preview(built.plan, built.old)
    now = ctl.clock.now()
    found: list[dict[str, Any]] = []
    if jobs:
        with ctl.db.session() as session:
            found = schedulepreview.preview(session, workspaces.get(session, workspace), jobs, now)
    return found + plantext.archived_schedules(built.plan, built.old)


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What merging a pull request's head would deploy; nothing of it is written."""

    status: Literal["planned", "failed"]
    source_sha: str | None  # the commit planned
    workspace_sha: str | None  # the deployed HEAD it was planned against
    reason: str  # why it failed; a note otherwise (e.g. the pull request moved)
    plan: planning.Plan | None = None
    schedules: tuple[dict[str, Any], ...] = ()
    changed_parts: tuple[str, ...] = ()  # code, configuration: what a deploy would change


def plan_from_git(
    ctl: Controller, workspace: str, source: GitSource, number: int, sha: str
) -> SourcePlan:
    """The dry-run plan of deploying pull request `number`'s head commit `sha` (fetched from
    `refs/pull/<number>/head`) to `workspace`: built and checked exactly as `deploy_from_git`
    builds and checks, planned against the deployed manifest. Nothing is written: no commit
    in the workspace repository, no job changed, no source commit marked deployed.

    When `sha` is not in the mirror after the fetch (force-pushed away), the pull request's
    current head is planned instead and the reason says so."""
    sources_dir = ctl.settings.data_dir / "sources"
    with sourcemirror.locked(sources_dir, workspace):
        repo = gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, workspace))
        head = gitstore.head_sha(repo)
        target: str | None = None
        try:
            mirror = sourcemirror.Mirror.open(sources_dir, workspace, source.url, source.branch)
            tip = mirror.fetch_pull(number, source.credential, ctl.settings.push_limit)
            target, note = (sha, "") if mirror.has(sha) else (tip, _moved(number, sha, tip))
            files = sourcemirror.files_at(
                mirror.repo, mirror.commit(target), source.path, ctl.settings.max_workspace_bytes
            )
            built = build(ctl, workspace, repo, head, files, source.path)
            parts = _check_unwritten(ctl, repo, head, built)
            schedules = tuple(_schedules(ctl, workspace, built))
        except DockyardError as exc:
            log.info(
                "pull request refused",
                extra={"action": "plan_from_git", "workspace": workspace, "reason": exc.message},
            )
            return SourcePlan("failed", target, head, exc.message)
    return SourcePlan("planned", target, head, note, built.plan, schedules, parts)


def _moved(number: int, sha: str, tip: str) -> str:
    return (
        f"pull request #{number} moved from {sha[:12]} to {tip[:12]} (force-pushed);"
        f" planned {tip[:12]}"
    )


def _check_unwritten(
    ctl: Controller, repo: pygit2.Repository, head: str | None, built: Built
) -> tuple[str, ...]:
    """The receive hook's checks on the commit a deploy would make, made in a scratch
    repository so not one object reaches the workspace's; returns what it would change."""
    with tempfile.TemporaryDirectory(prefix="dockyard-plan-") as tmp:
        scratch = pygit2.init_repository(tmp, bare=True)
        tree = gitstore.write_tree(scratch, built.files)
        sha = str(scratch.create_commit(None, WHO, WHO, "plan\n", tree, []))
        check_as_hook(ctl, scratch, sha, built.kid, built.checked)
        new = gitstore.commit_at(scratch, sha).tree
        old = None if head is None else gitstore.commit_at(repo, head).tree
        return tuple(
            label
            for label, paths in (
                ("code", gitstore.DEPLOYMENT_PATHS),
                ("configuration", gitstore.CONFIGURATION_PATHS),
            )
            if old is None or any(_entry(old, p) != _entry(new, p) for p in paths)
        )


def _entry(tree: pygit2.Tree, path: str) -> str | None:
    try:
        return str(tree[path].id)
    except KeyError:
        return None


def deployed_manifest(repo: pygit2.Repository, head: str | None) -> dict[str, Any] | None:
    """The manifest at HEAD; one that cannot be read is replaced, as `dockyard deploy` does."""
    data = None if head is None else gitstore.read_file(repo, head, gitstore.MANIFEST)
    if data is None:
        return None
    try:
        return manifests.load_yaml(data)
    except InvalidInput:
        return None


def check_sealed(files: dict[str, FileEntry], path: str, workspace: str, kid: str) -> None:
    """Every value of every `*.secrets.toml` is sealed for the workspace's current key; a
    refusal names the file as the source repository does."""
    folder = path.strip("/") + "/" if path.strip("/") else ""
    for name, entry in sorted(files.items()):
        if not pushrules.is_config_toml(name) or not crypto.is_secret_file(name):
            continue
        shown = folder + deployfiles.workspace_name(name)
        if entry.mode == gitstore.MODE_LINK:
            raise InvalidInput(f"{shown} is a symlink; commit the sealed file itself")
        pushrules.check_toml(shown, entry.data)
        crypto.check_sealed(
            entry.data.decode(),
            shown,
            [kid],
            clear_fix=(
                f"a repository may hold only sealed values: run `dockyard secrets seal {shown}"
                f" -w {workspace}` and commit the result"
            ),
        )


def commit_files(
    repo: pygit2.Repository, files: dict[str, FileEntry], head: str | None, message: str
) -> str | None:
    """The deploy commit on top of `head` (not yet on the branch), or None when its tree is
    HEAD's."""
    tree = gitstore.write_tree(repo, files)
    if head is not None and gitstore.commit_at(repo, head).tree.id == tree:
        return None
    parents = [pygit2.Oid(hex=head)] if head else []
    return str(repo.create_commit(None, WHO, WHO, message, tree, parents))


def check_as_hook(
    ctl: Controller,
    repo: pygit2.Repository,
    sha: str,
    kid: str,
    checked: manifests.Checked | None = None,
) -> manifests.Checked:
    """What the receive hook checks in a pushed commit, on this one (there is no push);
    `checked` stands in for the manifest's parse and validation only if the commit's
    manifest blob is the one it was made from (`prereceive.check_contents`)."""
    limits = prereceive.Limits(ctl.settings.max_workspace_bytes, ctl.settings.push_limit)
    walk = prereceive.Walk(repo, limits, [kid], {checked.blob} if checked else set())
    prereceive.check_history(walk, [gitstore.commit_at(repo, sha)])
    return prereceive.check_contents(repo, sha, kid, checked)
