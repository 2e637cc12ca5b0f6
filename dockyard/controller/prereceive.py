"""The pre-receive hook: refuse a push unless every commit and every object it adds is sound.

A push adds history, not only a tip: whatever any pushed commit holds stays readable to every
read token once the push is accepted. So every new commit is checked as stored data (paths,
links, `.git`, submodules, sizes, secrets sealed, configuration and manifest files parse within
bounds; `pushrules`), every new object must belong to one of them, the new content together is
bounded, and the tip alone is also checked as a deployment (the manifest validates, the
requirements and entry points are there, secrets are sealed for the current key). Only the tip
is ever reconciled and run; older versions are shown, and their readers fail with one line if
what they read does not hold (`manifests.load_yaml`).

git runs this with the pushed objects in quarantine (`GIT_QUARANTINE_PATH`): the new objects
are exactly those in it that the repository does not already hold, and libgit2 reads them once
the quarantine is added as an alternate. Each distinct (tree, path) and blob is checked once,
so a push of 1,000 commits costs about what its changes cost, not 1,000 whole trees. Whatever
this prints to stderr reaches the pusher as `remote: …`; a non-zero exit rejects the push,
and git then deletes the quarantine: nothing of a rejected push is stored.
"""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pygit2

from dockyard import crypto
from dockyard.controller import gitstore, keys, manifests, pushrules
from dockyard.errors import Conflict, DockyardError, InvalidInput

ZERO = "0" * 40
RACE = "another deploy landed first; run deploy again"
DEFAULT_MAX_WORKSPACE_BYTES = 50 * 1024 * 1024
MAX_REQUIREMENTS_BYTES = 1024 * 1024
_Obj = TypeVar("_Obj", pygit2.Tree, pygit2.Blob)


@dataclass(frozen=True, slots=True)
class Limits:
    workspace_bytes: int  # one commit's files, and any one file
    push_bytes: int  # everything a push adds (uncompressed)

    @classmethod
    def from_env(cls) -> "Limits":
        workspace = int(os.environ.get("DOCKYARD_MAX_WORKSPACE_BYTES", "0") or 0)
        workspace = workspace or DEFAULT_MAX_WORKSPACE_BYTES
        push = int(os.environ.get("DOCKYARD_MAX_PUSH_BYTES", "0") or 0)
        return cls(workspace, push or 4 * workspace)


class Refused(InvalidInput):
    """A problem found in a commit other than the tip: the message names that commit."""


def check_ref(old: str, new: str, ref: str) -> None:
    if ref != gitstore.BRANCH:
        raise InvalidInput(f"only {gitstore.BRANCH} can be pushed, not {ref}")
    if new == ZERO:
        raise InvalidInput("deleting the deployed branch is not allowed")


def check_current(repo: pygit2.Repository, old: str) -> None:
    """The pusher built on `old`; if `main` moved since, another deploy won the race."""
    if (gitstore.head_sha(repo) or ZERO) != old:
        raise Conflict(RACE)


@dataclass
class Walk:
    """The new commits of one push, oldest first, each tree and blob checked once."""

    repo: pygit2.Repository
    limits: Limits
    known_kids: list[str]  # current and retired keys: history may predate a rotation
    # manifest blobs (ids) whose bytes `manifests.load_yaml` has bound-checked already
    yaml_checked: set[str] = field(default_factory=set)
    sizes: dict[pygit2.Oid, int] = field(default_factory=dict)
    reached: set[pygit2.Oid] = field(default_factory=set)
    _trees: set[tuple[pygit2.Oid, str]] = field(default_factory=set)
    _blobs: set[tuple[pygit2.Oid, str]] = field(default_factory=set)
    _totals: dict[pygit2.Oid, int] = field(default_factory=dict)

    def commit(self, commit: pygit2.Commit) -> None:
        self.reached.add(commit.id)
        root = commit.tree
        self._tree(root, "")
        total = self._total(root)
        if total > self.limits.workspace_bytes:
            raise InvalidInput(
                f"workspace is {total} bytes, over the limit of {self.limits.workspace_bytes};"
                " exclude data files in .gitignore or raise DOCKYARD_MAX_WORKSPACE_BYTES"
            )

    def _tree(self, tree: pygit2.Tree, base: str) -> None:
        if (tree.id, base) in self._trees:
            return
        self.reached.add(tree.id)
        for entry in tree:
            path = pushrules.entry_path(base, entry.raw_name or b"")
            mode = int(entry.filemode)
            if not base:
                pushrules.check_top_level(path, mode)
            pushrules.check_mode(path, mode)
            self.reached.add(entry.id)
            if mode == pushrules.MODE_TREE:
                self._tree(self._object(entry.id, pygit2.Tree, path), path + "/")
            else:
                self._blob(path, entry.id, mode)
        self._trees.add((tree.id, base))

    def _blob(self, path: str, oid: pygit2.Oid, mode: int) -> None:
        if (oid, path) in self._blobs:
            return
        size = self.size(oid)
        if size > self.limits.workspace_bytes:
            raise InvalidInput(
                f"{path} is {size} bytes, over the limit of {self.limits.workspace_bytes};"
                " exclude data files in .gitignore or raise DOCKYARD_MAX_WORKSPACE_BYTES"
            )
        if mode == gitstore.MODE_LINK:
            pushrules.check_link(path, self._data(oid, path))
        elif path == gitstore.MANIFEST:
            if str(oid) not in self.yaml_checked:
                manifests.check_yaml(self._data(oid, path))
        elif pushrules.is_config_toml(path):
            data = self._data(oid, path)
            if crypto.is_secret_file(path):
                pushrules.check_secrets(path, data, self.known_kids)
            else:
                pushrules.check_toml(path, data)
        self._blobs.add((oid, path))

    def _data(self, oid: pygit2.Oid, path: str) -> bytes:
        return bytes(self._object(oid, pygit2.Blob, path).data)

    def _object(self, oid: pygit2.Oid, kind: type[_Obj], path: str) -> _Obj:
        found = self.repo[oid]
        if not isinstance(found, kind):
            raise InvalidInput(f"{path!r} is a malformed tree entry (its mode and object differ)")
        return found

    def size(self, oid: pygit2.Oid) -> int:
        if oid not in self.sizes:
            self.sizes[oid] = int(self.repo.odb.read_header(oid)[1])
        return self.sizes[oid]

    def _total(self, tree: pygit2.Tree) -> int:
        """Bytes of every file below `tree` (each tree summed once, whatever its path)."""
        if tree.id not in self._totals:
            total = 0
            for entry in tree:
                if int(entry.filemode) == pushrules.MODE_TREE:
                    total += self._total(self._object(entry.id, pygit2.Tree, entry.name or ""))
                elif int(entry.filemode) != pushrules.MODE_SUBMODULE:
                    total += self.size(entry.id)
            self._totals[tree.id] = total
        return self._totals[tree.id]


def new_objects(repo: pygit2.Repository, quarantine: Path) -> dict[pygit2.Oid, int]:
    """The objects this push adds (in quarantine and not already stored): id → size."""
    incoming = pygit2.Odb(str(quarantine))
    stored = pygit2.Odb(str(Path(repo.path) / "objects"))
    return {oid: int(incoming.read_header(oid)[1]) for oid in incoming if oid not in stored}


def check_new_bytes(added: dict[pygit2.Oid, int], limits: Limits) -> None:
    total = sum(added.values())
    if total > limits.push_bytes:
        raise InvalidInput(
            f"this push adds {total} bytes of new content, over the limit of"
            f" {limits.push_bytes}; push fewer versions at once (or deploy only the newest),"
            " or raise DOCKYARD_MAX_PUSH_BYTES"
        )


def new_commits(repo: pygit2.Repository, tip: str) -> list[pygit2.Commit]:
    """The commits `tip` brings that no ref already has, oldest first."""
    walker = repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    for name in repo.references:
        target = repo.references[name].resolve().target
        if isinstance(target, pygit2.Oid) and isinstance(repo.get(target), pygit2.Commit):
            walker.hide(target)
    return list(walker)


def check_history(walk: Walk, commits: list[pygit2.Commit]) -> None:
    for i, commit in enumerate(commits):
        try:
            walk.commit(commit)
        except DockyardError as exc:
            if i == len(commits) - 1:
                raise
            raise Refused(
                f"commit {str(commit.id)[:12]} (not the newest of this push): {exc.message}"
                " — every pushed commit is checked: remove it from the history"
                " (e.g. git rebase -i) and push again"
            ) from exc


def check_reached(walk: Walk, added: dict[pygit2.Oid, int]) -> None:
    stray = [oid for oid in added if oid not in walk.reached]
    if stray:
        raise InvalidInput(
            f"the push carries {len(stray)} object(s) no pushed commit uses"
            f" (e.g. {str(stray[0])[:12]}); push the branch with git or dockyard deploy"
        )


def check_contents(
    repo: pygit2.Repository,
    sha: str,
    current_kid: str | None,
    checked: manifests.Checked | None = None,
) -> manifests.Checked:
    """The tip as a deployment: what the reconciler and the runs will read. `checked` (the
    server's own deploy, which parsed and validated the bytes it wrote) stands in for parsing
    and validating the manifest only when the commit's manifest blob is that very object;
    a pushed commit is always checked in full. Returns the checked manifest."""
    commit = gitstore.commit_at(repo, sha)
    manifest = _manifest(repo, commit, checked)
    _check_requirements(repo, sha)
    pushrules.check_entry_points(manifest.manifest, lambda path: _is_file(commit.tree, path))
    kids = [current_kid] if current_kid else []
    for name, entry in gitstore.iter_files(repo, sha, gitstore.CONFIG):
        if crypto.is_secret_file(name) and entry.mode != gitstore.MODE_LINK:
            pushrules.check_secrets(f"{gitstore.CONFIG}/{name}", entry.data, kids)
    return manifest


def _manifest(
    repo: pygit2.Repository, commit: pygit2.Commit, checked: manifests.Checked | None
) -> manifests.Checked:
    try:
        blob = repo[commit.tree[gitstore.MANIFEST].id]
    except KeyError:
        blob = None
    if not isinstance(blob, pygit2.Blob):
        raise InvalidInput(f"commit {str(commit.id)[:12]} has no {gitstore.MANIFEST}")
    if checked is not None and checked.holds(blob.id):
        return checked
    return manifests.checked(bytes(blob.data))


def _check_requirements(repo: pygit2.Repository, sha: str) -> None:
    data = gitstore.read_file(repo, sha, gitstore.REQUIREMENTS)
    try:
        if data is None or len(data) > MAX_REQUIREMENTS_BYTES:
            raise ValueError("missing or too big")
        requirements = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"commit {sha[:12]} has no valid {gitstore.REQUIREMENTS}") from exc
    if not isinstance(requirements, dict) or "dlt_version" not in requirements:
        raise InvalidInput(f"{gitstore.REQUIREMENTS} is not a dlt requirements manifest")


def _is_file(tree: pygit2.Tree, path: str) -> bool:
    try:
        return int(tree[path].filemode) in pushrules.FILE_MODES
    except KeyError:
        return False


def check_push(
    git_dir: Path, quarantine: Path, updates: list[tuple[str, str, str]], limits: Limits
) -> None:
    repo = pygit2.Repository(str(git_dir))
    repo.odb.add_disk_alternate(str(quarantine))
    for old, new, ref in updates:
        check_ref(old, new, ref)
        check_current(repo, old)
    added = new_objects(repo, quarantine)
    check_new_bytes(added, limits)
    published = keys.published(git_dir)
    current = published.get("current")
    retired = published.get("retired")
    known = [current] if isinstance(current, str) else []
    known += [k for k in retired if isinstance(k, str)] if isinstance(retired, list) else []
    walk = Walk(repo, limits, known)
    walk.sizes.update(added)
    for _old, new, _ref in updates:
        check_history(walk, new_commits(repo, new))
        check_contents(repo, new, current if isinstance(current, str) else None)
    check_reached(walk, added)


def read_updates(raw: bytes) -> list[tuple[str, str, str]]:
    updates = []
    for line in raw.decode("utf-8", "replace").splitlines():
        old, new, ref = line.split(" ", 2)
        updates.append((old, new, ref))
    return updates


def main() -> int:
    quarantine = os.environ.get("GIT_QUARANTINE_PATH")
    try:
        if not quarantine:
            raise InvalidInput("the server's git does not quarantine pushes; it needs git ≥ 2.13")
        updates = read_updates(sys.stdin.buffer.read())
        git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
        check_push(git_dir, Path(quarantine), updates, Limits.from_env())
    except DockyardError as exc:
        sys.stderr.write(f"dockyard: push rejected: {exc.message}\n")
        return 1
    except (pygit2.GitError, KeyError, ValueError) as exc:  # a malformed or missing object
        sys.stderr.write(f"dockyard: push rejected: a pushed object cannot be read ({exc})\n")
        return 1
    except Exception as exc:  # noqa: BLE001 (fail closed, in one line, whatever went wrong)
        sys.stderr.write(
            f"dockyard: push rejected: the server could not check this push"
            f" ({type(exc).__name__}: {exc})\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
