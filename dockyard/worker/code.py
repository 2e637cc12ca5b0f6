"""A run's code on a worker host: each workspace's repository mirrored (bare) from the
server's git smart HTTP with the worker token as the Basic password, fetched when a SHA is
missing, and checked out once per SHA (shared by that deployment's runs)."""

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pygit2

from dockyard.controller import gitstore
from dockyard.errors import DockyardError


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: Any
    ) -> pygit2.UserPass:
        return pygit2.UserPass("worker", self.token)


class CodeCache:
    def __init__(self, root: Path, server: str, token: str) -> None:
        self.mirrors = root / "repos"
        self.checkouts = root / "checkouts"
        self.server = server.rstrip("/")
        self.token = token
        self._lock = threading.Lock()

    def checkout(self, workspace: str, git_path: str, sha: str) -> Path:
        """The code of `workspace` at `sha` (fetched if the mirror lacks it)."""
        target = self.checkouts / workspace / sha
        with self._lock:
            if not target.exists():
                repo = self._mirror(workspace, git_path, sha)
                tmp = target.with_name(f".{sha}.tmp")
                if tmp.exists():
                    shutil.rmtree(tmp)
                gitstore.checkout(repo, sha, gitstore.CODE, tmp)
                os.replace(tmp, target)
            os.utime(target)
        return target

    def _mirror(self, workspace: str, git_path: str, sha: str) -> pygit2.Repository:
        path = self.mirrors / f"{workspace}.git"
        if path.exists():
            repo = pygit2.Repository(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True)
        if _has(repo, sha):
            return repo
        remote = repo.remotes.create_anonymous(f"{self.server}{git_path}")
        try:
            remote.fetch(["+refs/heads/*:refs/heads/*"], callbacks=_Callbacks(self.token))
        except pygit2.GitError as exc:
            raise DockyardError(
                f"could not fetch {git_path} from {self.server}: {exc}; check the worker token"
            ) from exc
        if not _has(repo, sha):
            raise DockyardError(f"{git_path} has no commit {sha[:12]} on the server")
        return repo


def _has(repo: pygit2.Repository, sha: str) -> bool:
    try:
        return repo.get(sha) is not None
    except ValueError:
        return False
