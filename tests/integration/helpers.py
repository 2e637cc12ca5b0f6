"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2

from dockyard.controller import gitstore

START = 1_772_618_400  # 2026-03-04T10:00:00Z
Files = Mapping[str, bytes | gitstore.FileEntry]


def file(data: bytes) -> gitstore.FileEntry:
    return gitstore.FileEntry(gitstore.MODE_FILE, data)


@dataclass
class Committer:
    """Writes commits on `main` the way `dockyard deploy` does: a whole tree per commit."""

    repo: Any  # a pygit2.Repository (pygit2 is untyped)
    time: int = START  # each commit is one minute after the previous one
    shas: list[str] = field(default_factory=list)

    @staticmethod
    def entries(files: Files) -> dict[str, gitstore.FileEntry]:
        """Plain bytes are regular files."""
        return {p: d if isinstance(d, gitstore.FileEntry) else file(d) for p, d in files.items()}

    def commit(self, files: Files, message: str = "deploy") -> str:
        tree = gitstore.write_tree(self.repo, self.entries(files))
        self.time += 60
        sig = pygit2.Signature("dockyard test", "test@dockyard.invalid", self.time, 0)
        head = gitstore.head_sha(self.repo)
        parents = [head] if head else []
        sha = str(self.repo.create_commit(gitstore.BRANCH, sig, sig, message, tree, parents))
        self.shas.append(sha)
        return sha
