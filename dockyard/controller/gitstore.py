"""Per-workspace bare git repositories: what is deployed, at which version.

A commit holds `manifest.yaml`, `requirements.json`, `code/…` and `config/…`. The
deployment version is the newest commit that changed code, manifest or requirements; the
configuration version is the newest that changed `config/`. Both are read from history, not
stored elsewhere, so `git clone` shows exactly what the server runs.
"""

import os
import re
import stat
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pygit2

from dockyard.errors import InvalidInput, NotFound

BRANCH = "refs/heads/main"
MANIFEST = "manifest.yaml"
REQUIREMENTS = "requirements.json"
CODE = "code"
CONFIG = "config"
DEPLOYMENT_PATHS = (CODE, MANIFEST, REQUIREMENTS)
CONFIGURATION_PATHS = (CONFIG,)
TOP_LEVEL = {CODE, CONFIG, MANIFEST, REQUIREMENTS}
MODE_FILE = pygit2.GIT_FILEMODE_BLOB
MODE_EXEC = pygit2.GIT_FILEMODE_BLOB_EXECUTABLE
MODE_LINK = pygit2.GIT_FILEMODE_LINK
# the trailer a deploy from a git host adds to its commit: `Source-Commit: OWNER/NAME@SHA`
SOURCE_TRAILER = "Source-Commit"
_SOURCE_LINE = re.compile(rf"^{SOURCE_TRAILER}: (\S+)@([0-9a-f]{{40}})$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class FileEntry:
    mode: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Version:
    sha: str
    created_at: datetime
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "version": self.sha,
            "created_at": self.created_at.isoformat(),
            "message": self.message,
            "source_commit": source_commit(self.message),
        }


def source_commit(message: str) -> str | None:
    """`OWNER/NAME@SHA` from a commit message's `Source-Commit:` trailer (the last one)."""
    found = _SOURCE_LINE.findall(message)
    return f"{found[-1][0]}@{found[-1][1]}" if found else None


def init_bare(path: Path) -> pygit2.Repository:
    """A bare repository whose HEAD is `main` and that accepts pushes over smart HTTP."""
    repo = pygit2.init_repository(str(path), bare=True)
    repo.references.create("HEAD", BRANCH, force=True)
    repo.config["http.receivepack"] = True
    repo.config["receive.denyDeletes"] = True
    repo.config["receive.denyNonFastForwards"] = True
    return repo


def open_repo(path: Path) -> pygit2.Repository:
    if not path.exists():
        raise NotFound(f"no repository at {path}")
    return pygit2.Repository(str(path))


def head_sha(repo: pygit2.Repository) -> str | None:
    ref = repo.references.get(BRANCH)
    return None if ref is None else str(ref.target)


def move_branch(repo: pygit2.Repository, new: str, old: str | None) -> bool:
    """Compare-and-swap `main` from `old` (None: it must not exist) to `new`, with git's own
    ref locking; False when someone else moved it first."""
    done = subprocess.run(
        ["git", "update-ref", BRANCH, new, old or "0" * 40],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def commit_at(repo: pygit2.Repository, sha: str) -> pygit2.Commit:
    try:
        obj = repo.revparse_single(sha)
        commit = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise NotFound(f"no version {sha} in this workspace") from exc
    return commit


def read_file(repo: pygit2.Repository, sha: str, path: str) -> bytes | None:
    tree = commit_at(repo, sha).tree
    try:
        entry = tree[path]
    except KeyError:
        return None
    blob = repo[entry.id]
    return bytes(blob.data) if isinstance(blob, pygit2.Blob) else None


def iter_files(repo: pygit2.Repository, sha: str, prefix: str) -> Iterator[tuple[str, FileEntry]]:
    """Every file below `prefix/` (or the whole commit for "") at `sha`, relative to it."""
    tree = commit_at(repo, sha).tree
    if not prefix:
        yield from _walk(repo, tree, "")
        return
    try:
        top = tree[prefix]
    except KeyError:
        return
    yield from _walk(repo, repo[top.id], "")


def config_files(repo: pygit2.Repository, sha: str) -> dict[str, bytes]:
    """The configuration files of a commit (`config/…`), by name relative to `config/`."""
    return {name: entry.data for name, entry in iter_files(repo, sha, CONFIG)}


def _walk(
    repo: pygit2.Repository, tree: pygit2.Object, base: str
) -> Iterator[tuple[str, FileEntry]]:
    assert isinstance(tree, pygit2.Tree)
    for entry in tree:
        path = f"{base}{entry.name}"
        if entry.filemode == pygit2.GIT_FILEMODE_TREE:
            yield from _walk(repo, repo[entry.id], path + "/")
        else:
            blob = repo[entry.id]
            assert isinstance(blob, pygit2.Blob)
            yield path, FileEntry(entry.filemode, bytes(blob.data))


def checkout(repo: pygit2.Repository, sha: str, prefix: str, dest: Path) -> None:
    """Write the files below `prefix/` at `sha` into `dest` (created; must not exist)."""
    dest.mkdir(parents=True)
    for rel, entry in iter_files(repo, sha, prefix):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.mode == MODE_LINK:
            os.symlink(entry.data.decode(), target)
            continue
        target.write_bytes(entry.data)
        if entry.mode == MODE_EXEC:  # executable for whoever may read it (the umask decides)
            mode = target.stat().st_mode
            target.chmod(mode | (mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)) >> 2)


def write_tree(repo: pygit2.Repository, files: Mapping[str, FileEntry]) -> pygit2.Oid:
    """A tree object holding exactly `files` (repo-relative POSIX paths)."""
    index = pygit2.Index()
    for path, entry in sorted(files.items()):
        check_path(path)
        oid = repo.create_blob(entry.data)
        index.add(pygit2.IndexEntry(path, oid, pygit2.enums.FileMode(entry.mode)))
    return index.write_tree(repo)


def check_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"path {path!r} escapes the workspace; remove it or fix the link")


def _entry_oid(tree: pygit2.Tree, path: str) -> str | None:
    try:
        return str(tree[path].id)
    except KeyError:
        return None


def _fingerprint(commit: pygit2.Commit, paths: tuple[str, ...]) -> tuple[str | None, ...]:
    return tuple(_entry_oid(commit.tree, p) for p in paths)


def history(repo: pygit2.Repository, paths: tuple[str, ...]) -> list[Version]:
    """Commits on `main` (first parent, newest first) that changed any of `paths`."""
    head = head_sha(repo)
    if head is None:
        return []
    found: list[Version] = []
    commit: pygit2.Commit | None = commit_at(repo, head)
    while commit is not None:
        parent = commit.parents[0] if commit.parents else None
        mine = _fingerprint(commit, paths)
        if (parent is None and any(mine)) or (
            parent is not None and mine != _fingerprint(parent, paths)
        ):
            found.append(_version(commit))
        commit = parent
    return found


def latest_version(repo: pygit2.Repository, sha: str, paths: tuple[str, ...]) -> str | None:
    """The newest commit at or before `sha` (first parent) that changed any of `paths`."""
    commit: pygit2.Commit | None = commit_at(repo, sha)
    while commit is not None:
        parent = commit.parents[0] if commit.parents else None
        mine = _fingerprint(commit, paths)
        if parent is None:
            return str(commit.id) if any(mine) else None
        if mine != _fingerprint(parent, paths):
            return str(commit.id)
        commit = parent
    return None


def _version(commit: pygit2.Commit) -> Version:
    created = datetime.fromtimestamp(commit.commit_time, tz=UTC)
    return Version(str(commit.id), created, commit.message.strip())


def version_info(repo: pygit2.Repository, sha: str) -> Version:
    return _version(commit_at(repo, sha))


def changed_paths(repo: pygit2.Repository, old: str | None, new: str) -> list[str]:
    """Files added, removed or modified between two versions."""
    new_tree = commit_at(repo, new).tree
    if old is None:
        return sorted(p for p, _ in _walk_paths(repo, new_tree, ""))
    diff = commit_at(repo, old).tree.diff_to_tree(new_tree)
    return sorted({d.new_file.path for d in diff.deltas} | {d.old_file.path for d in diff.deltas})


def _walk_paths(repo: pygit2.Repository, tree: pygit2.Tree, base: str) -> Iterator[tuple[str, str]]:
    for entry in tree:
        if entry.filemode == pygit2.GIT_FILEMODE_TREE:
            sub = repo[entry.id]
            assert isinstance(sub, pygit2.Tree)
            yield from _walk_paths(repo, sub, f"{base}{entry.name}/")
        else:
            yield f"{base}{entry.name}", str(entry.id)
