"""Rolling a workspace back to one of its earlier deployments (`dockyard deployment rollback`).

A rollback is a new commit on `main` whose tree is the earlier deployment's, not a branch
moved backwards: history is kept, every version is still a commit SHA, `deployment list`
shows the rollback, and rolling back the rollback is one more commit. The commit is made on
the server and goes through exactly what a server-made deploy goes through
(`gitsource.check_as_hook`: the receive hook's checks on it, then `gitstore.move_branch`, a
compare-and-swap), then the reconciler applies it like any deploy: jobs added, updated,
archived; runs in flight keep the version they started with.

Secrets: the earlier tree's `*.secrets.toml` may be sealed for a key retired since. The
server holds every retired key (runs of old configuration versions decrypt with them), so it
re-seals those files for the current key, as `rotate-key` does, before the commit is checked:
a rollback never needs the user's plaintext, and the hook's rule (secrets sealed for the
current key) stays the same for every commit.

A workspace linked to GitHub deploys from there; rolling it back here would be undone by the
next push, so it is refused with the `git revert` to run on GitHub instead (`--force`
overrides).
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pygit2

from dockyard import crypto
from dockyard.controller import deployfiles, gitsource, gitstore, manifests, planning, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import Conflict, DockyardError, InvalidInput, NotFound

log = logging.getLogger(__name__)
SHA = re.compile(r"[0-9a-f]{7,40}")
RESTORES = re.compile(r"^Restores deployment ([0-9a-f]{40})\.$", re.MULTILINE)
UNDONE_LISTED = 20  # commits named one per line in the rollback's message; the rest counted
WHO = pygit2.Signature("dockyard", "dockyard@localhost")


@dataclass(frozen=True, slots=True)
class Keys:
    """The workspace's keys, read by the caller in its own session."""

    kid: str
    public_key: str
    fp_key: bytes
    identities: Mapping[str, str]  # kid → private key, current and retired


@dataclass(frozen=True, slots=True)
class Source:
    """The workspace's GitHub link, when it has one."""

    repo: str  # OWNER/NAME, as the `Source-Commit:` trailers name it
    branch: str


@dataclass(frozen=True, slots=True)
class Rollback:
    status: Literal["rolled_back", "unchanged"]
    target: str  # the deployment rolled back to (full SHA)
    previous: str  # HEAD before
    commit: str | None  # the rollback commit; None when nothing changed
    plan: planning.Plan
    undone: list[str] = field(default_factory=list)  # commits whose changes it undoes
    resealed: list[str] = field(default_factory=list)  # config files sealed again
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "target": self.target,
            "previous": self.previous,
            "commit": self.commit,
            "plan": self.plan.as_dict(),
            "summary": self.plan.summary(),
            "undone": self.undone,
            "resealed": self.resealed,
            "note": self.note,
        }


def rollback(
    ctl: Controller,
    workspace: str,
    sha: str,
    keys: Keys,
    source: Source | None = None,
    force: bool = False,
) -> Rollback:
    """Commit deployment `sha`'s tree on top of HEAD, check it as the hook would, move `main`
    (compare-and-swap) and reconcile. Nothing is written when any step refuses."""
    repo = gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, workspace))
    head = gitstore.head_sha(repo)
    target = find(repo, sha, workspace)
    assert head is not None  # a deployment was found on main's history
    if source is not None and not force:
        raise Conflict(refusal(repo, head, target, source, workspace))
    files, resealed = _resealed(repo, head, target, keys)
    plan = planning.plan(_manifest(repo, head), _manifest(repo, target) or {"jobs": []})
    tree = gitstore.write_tree(repo, files)
    if gitstore.commit_at(repo, head).tree.id == tree:
        return Rollback("unchanged", target, head, None, plan)
    undone = _since(repo, head, target)
    message = _message(repo, target, undone, plan)
    new = str(repo.create_commit(None, WHO, WHO, message, tree, [pygit2.Oid(hex=head)]))
    gitsource.check_as_hook(ctl, repo, new, keys.kid)
    if not gitstore.move_branch(repo, new, head):
        raise Conflict("another deploy landed while rolling back; run the rollback again")
    log.info(
        "rolled back",
        extra={"action": "rollback", "workspace": workspace, "sha": new, "target": target},
    )
    ctl.reconciler.reconcile(workspace)
    note = None
    if source is not None:
        note = (
            f"workspace {workspace} deploys from GitHub {source.repo}@{source.branch}: the next"
            " push there deploys GitHub's head again"
        )
    return Rollback("rolled_back", target, head, new, plan, undone, resealed, note)


def find(repo: pygit2.Repository, sha: str, workspace: str) -> str:
    """The full SHA of the deployment `sha` (7 to 40 hex digits) names on `main`'s history."""
    wanted = sha.strip().lower()
    how = f"`dockyard deployment list -w {workspace}` shows them"
    if not SHA.fullmatch(wanted):
        raise InvalidInput(f"{sha[:50]!r} is not a commit SHA (7 to 40 hex digits); {how}")
    found = [
        v.sha for v in gitstore.history(repo, gitstore.DEPLOYMENT_PATHS) if v.sha.startswith(wanted)
    ]
    if not found:
        raise NotFound(f"{wanted} is not a deployment of workspace {workspace}; {how}")
    if len(found) > 1:
        raise InvalidInput(f"{wanted} names {len(found)} deployments; give more digits ({how})")
    return found[0]


def refusal(repo: pygit2.Repository, head: str, target: str, source: Source, workspace: str) -> str:
    """Why a linked workspace is not rolled back here, and the revert to run on GitHub."""
    then = gitsource.last_source(repo, restored(repo, target), source.repo)
    now = gitsource.last_source(repo, head, source.repo)
    where = f"workspace {workspace} deploys from GitHub {source.repo}@{source.branch}"
    force = f"`dockyard deployment rollback {target[:12]} -w {workspace} --force`"
    if then is None or now is None or then == now:
        return (
            f"{where}: revert there the commits after the one you want and push (or {force};"
            " the next push deploys GitHub's head again)"
        )
    return (
        f"{where}: revert there with `git revert --no-edit {then}..{now}` and push (or {force};"
        " the next push deploys GitHub's head again)"
    )


def restored(repo: pygit2.Repository, sha: str) -> str:
    """The deployment whose content `sha` holds: itself, or what a rollback restored."""
    for _ in range(UNDONE_LISTED):
        message = gitstore.commit_at(repo, sha).message
        found = RESTORES.search(message) if message.startswith("Rollback to ") else None
        if found is None or found.group(1) not in repo:
            return sha
        sha = found.group(1)
    return sha


def _resealed(
    repo: pygit2.Repository, head: str, target: str, keys: Keys
) -> tuple[dict[str, Any], list[str]]:
    """`target`'s files with its secrets sealed for the current key: HEAD's file where it holds
    the same values sealed for that key (so rolling back twice changes nothing), else sealed
    again here."""
    files = dict(gitstore.iter_files(repo, target, ""))
    now = dict(gitstore.iter_files(repo, head, gitstore.CONFIG))
    try:
        for name, entry in now.items():
            path = f"{gitstore.CONFIG}/{name}"
            if crypto.is_secret_file(name) and _same_values(files.get(path), entry, name, keys):
                files[path] = entry
        return deployfiles.resealed(files, keys.identities, keys.public_key, keys.fp_key, keys.kid)
    except crypto.SecretError as exc:
        raise InvalidInput(
            f"cannot seal {target[:12]}'s secrets for the current key ({exc.message}); deploy"
            " the configuration you want instead"
        ) from None


def _same_values(old: FileEntry | None, now: FileEntry, name: str, keys: Keys) -> bool:
    """`now` is sealed for the current key and holds exactly `old`'s values."""
    if old is None or old.mode != now.mode or now.mode == gitstore.MODE_LINK:
        return False
    if old.data == now.data:
        return True
    text = now.data.decode()
    if not deployfiles.sealed_for(text, name, keys.kid):
        return False
    clear = crypto.decrypt_toml(old.data.decode(), name, keys.identities)[0]
    return clear == crypto.decrypt_toml(text, name, keys.identities)[0]


def _manifest(repo: pygit2.Repository, sha: str) -> dict[str, Any] | None:
    data = gitstore.read_file(repo, sha, gitstore.MANIFEST)
    if data is None:
        return None
    try:
        return manifests.load_yaml(data)
    except DockyardError:
        return None


def _since(repo: pygit2.Repository, head: str, target: str) -> list[str]:
    """The commits on `main` (first parent, newest first) after `target`."""
    out: list[str] = []
    commit = gitstore.commit_at(repo, head)
    while str(commit.id) != target:
        out.append(str(commit.id))
        if not commit.parents:
            raise NotFound(f"{target[:12]} is not on the history of main")
        commit = commit.parents[0]
    return out


def _message(repo: pygit2.Repository, target: str, undone: list[str], plan: planning.Plan) -> str:
    """`Rollback to <sha12>`, then what it undoes (one commit a line) and the plan."""
    lines = [f"Rollback to {target[:12]}", "", f"Restores deployment {target}."]
    lines.append(f"Undoes {len(undone)} commit(s):")
    for sha in undone[:UNDONE_LISTED]:
        subject = gitstore.commit_at(repo, sha).message.strip().splitlines()
        lines.append(f"  {sha[:12]} {subject[0] if subject else ''}".rstrip())
    if len(undone) > UNDONE_LISTED:
        lines.append(f"  … and {len(undone) - UNDONE_LISTED} older")
    lines.append(f"plan: {plan.summary()}")
    lines += [
        f"{kind}: {ref}" for kind in ("added", "updated", "archived") for ref in plan.refs(kind)
    ]
    return "\n".join(lines) + "\n"
