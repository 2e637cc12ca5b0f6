"""The client side of the git store: a local mirror of the workspace repository, the
deploy commit, and the push (pygit2 over smart HTTP, the token as HTTP Basic password).
"""

import getpass
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pygit2

from dockyard.cli.config import cache_dir
from dockyard.controller import gitstore, manifests
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import Conflict, Forbidden, InvalidInput, Unauthorized, Unavailable

REMOTE_MAIN = "refs/remotes/origin/main"
LOCAL_DEPLOY = "refs/heads/deploy"
RACE = "another deploy landed first; run deploy again"
# what git and libgit2 report when `main` moved between the fetch and the update
_RACE_SIGNS = (
    "non-fast-forward",
    "fetch first",
    "failed to update ref",
    "cannot lock ref",
    "failed to lock",
    "stale info",
    RACE,
)


class Interrupted(Unavailable):
    """The connection broke during a push: the commit may or may not have landed."""


class Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token
        self.remote_messages: list[str] = []
        self.rejected: str | None = None

    def credentials(self, url: str, username: str | None, allowed: int) -> Any:
        if not self.token:
            raise Unauthorized("the server wants a token; run `dockyard login`")
        return pygit2.UserPass("token", self.token)

    def sideband_progress(self, text: str) -> None:
        self.remote_messages.append(text)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected = message


@dataclass
class Mirror:
    repo: pygit2.Repository
    url: str
    token: str | None

    @classmethod
    def open(cls, server: str, workspace: str, token: str | None) -> "Mirror":
        key = hashlib.sha256(server.encode()).hexdigest()[:16]
        path = cache_dir() / "repos" / key / f"{workspace}.git"
        url = f"{server}/git/{workspace}.git"
        if path.exists():
            repo = pygit2.Repository(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True)
        if "origin" in repo.remotes.names():
            repo.remotes.set_url("origin", url)
        else:
            repo.remotes.create("origin", url, "+refs/heads/main:" + REMOTE_MAIN)
        return cls(repo, url, token)

    def fetch(self) -> str | None:
        """Bring the mirror up to the server's `main`; return its SHA (None when empty).
        Pruned: a branch the server no longer has (a new server at the same address, a
        workspace made again) is dropped here too, never taken for what is deployed."""
        callbacks = Callbacks(self.token)
        try:
            self.repo.remotes["origin"].fetch(
                callbacks=callbacks, prune=pygit2.enums.FetchPrune.PRUNE
            )
        except pygit2.GitError as exc:
            raise _git_error(exc, self.url, callbacks) from exc
        ref = self.repo.references.get(REMOTE_MAIN)
        return None if ref is None else str(ref.target)

    def read(self, sha: str | None, path: str) -> bytes | None:
        return None if sha is None else gitstore.read_file(self.repo, sha, path)

    def files(self, sha: str | None) -> dict[str, FileEntry]:
        """Every file of the commit `sha` (empty for None)."""
        return {} if sha is None else dict(gitstore.iter_files(self.repo, sha, ""))

    def manifest(self, sha: str | None) -> dict[str, Any] | None:
        data = self.read(sha, gitstore.MANIFEST)
        return None if data is None else manifests.load_yaml(data)

    def contains(self, head: str | None, sha: str) -> bool:
        """Whether the fetched `head` is `sha` or has it in its history."""
        if head is None:
            return False
        if head == sha:
            return True
        return bool(self.repo.descendant_of(pygit2.Oid(hex=head), pygit2.Oid(hex=sha)))

    def commit(
        self, files: Mapping[str, FileEntry], parent: str | None, message: str
    ) -> str | None:
        """A commit of `files` on top of `parent`, or None when nothing would change."""
        tree = gitstore.write_tree(self.repo, files)
        if parent is not None and gitstore.commit_at(self.repo, parent).tree.id == tree:
            return None
        author = _signature()
        oid = self.repo.create_commit(
            None, author, author, message, tree, [pygit2.Oid(hex=parent)] if parent else []
        )
        return str(oid)

    def changed_parts(self, sha: str, parent: str | None) -> list[str]:
        if parent is None:
            return ["code", "configuration"]
        parts = []
        for label, paths in (
            ("code", gitstore.DEPLOYMENT_PATHS),
            ("configuration", gitstore.CONFIGURATION_PATHS),
        ):
            if gitstore.latest_version(self.repo, sha, paths) == sha:
                parts.append(label)
        return parts

    def push(self, sha: str) -> None:
        self.repo.references.create(LOCAL_DEPLOY, pygit2.Oid(hex=sha), force=True)
        callbacks = Callbacks(self.token)
        try:
            self.repo.remotes["origin"].push(
                [f"{LOCAL_DEPLOY}:{gitstore.BRANCH}"], callbacks=callbacks
            )
        except pygit2.GitError as exc:
            raise _git_error(exc, self.url, callbacks) from exc
        if callbacks.rejected:
            raise _rejection(callbacks)


def _rejection(callbacks: Callbacks) -> Exception:
    text = "".join(callbacks.remote_messages)
    seen = f"{callbacks.rejected or ''}\n{text}"
    if any(sign in seen for sign in _RACE_SIGNS):
        return Conflict(RACE)
    for line in text.splitlines():
        if "dockyard:" in line:
            return InvalidInput(line.split("dockyard:", 1)[1].strip())
    return InvalidInput(f"the server rejected the push: {callbacks.rejected}")


def _git_error(exc: pygit2.GitError, url: str, callbacks: Callbacks) -> Exception:
    text = str(exc)
    if "401" in text or "authentication" in text.lower():
        return Unauthorized(f"the server refused the token for {url}; run `dockyard login`")
    if "404" in text:
        return InvalidInput(f"no git repository at {url}; does the workspace exist?")
    if "403" in text:  # git shows no reason: `dockyard deploy` asks the API why (HTTP 403)
        return Forbidden(f"the server refused this token's push to {url} (HTTP 403)")
    if "413" in text:
        return InvalidInput(
            f"the push is larger than {url} accepts (HTTP 413); exclude data files in"
            " .gitignore, or ask the operator to raise DOCKYARD_MAX_PUSH_BYTES"
        )
    if callbacks.remote_messages:
        return _rejection(callbacks)
    if "failed to connect" in text.lower() or "could not connect" in text.lower():
        return Unavailable(f"cannot reach the dockyard server at {url}: {text}")
    return Interrupted(f"git transfer with {url} failed: {text}")


def _signature() -> pygit2.Signature:
    try:
        config = pygit2.Config.get_global_config()
        name, email = config["user.name"], config["user.email"]
        if name and email:
            return pygit2.Signature(name, email)
    except (KeyError, OSError, pygit2.GitError):
        pass
    user = getpass.getuser()
    return pygit2.Signature(user, f"{user}@localhost")
