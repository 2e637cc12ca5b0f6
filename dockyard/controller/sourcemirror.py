"""The server's copy of a workspace's source repository on a git host (GitHub or any smart
HTTP server): fetched with pygit2 into `<data-dir>/sources/<workspace>.git`, bounded, and read
without ever checking out anything it does not first check.

Everything a git host sends is hostile: the URL must be HTTPS (plain HTTP only to loopback,
for tests), a fetch whose pack grows past the push limit is cut off while it arrives (nothing
of it is kept), and a commit's files are checked like a pushed commit's (UTF-8 names, no
`.git`, no submodules, links that stay inside, bounded sizes) before one byte is written.
"""

import fcntl
import ipaddress
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pygit2

from dockyard.controller import gitstore, pushrules
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import InvalidInput, Unauthorized, Unavailable

SOURCE = "refs/remotes/source/"
DEPLOYED = "refs/dockyard/deployed"  # the last source commit whose files the workspace holds
PULLS = "refs/dockyard/pulls/"  # pull request heads fetched to plan them (never deployed)
CONNECT_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 60_000

Credential = Callable[[], str | None]  # the token for HTTP Basic `x-access-token:<token>`


def check_url(url: str) -> None:
    """HTTPS, or HTTP to a loopback address (a test's git host); no credentials inside."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise InvalidInput("the repository URL holds credentials; give a token instead")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise InvalidInput(
        f"cannot fetch {url!r}: a source repository is fetched over https:// (plain http://"
        " only from a loopback address)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, credential: Credential, limit: int) -> None:
        super().__init__()
        self.credential = credential
        self.limit = limit
        self.asked = False
        self.too_big = False

    def credentials(self, url: str, username: str | None, allowed: int) -> Any:
        token = None if self.asked else self.credential()
        self.asked = True
        if not token:
            raise Unauthorized(f"{_shown(url)} wants credentials and the one given was refused")
        return pygit2.UserPass("x-access-token", token)

    def transfer_progress(self, stats: Any) -> None:
        if int(stats.received_bytes) > self.limit:
            self.too_big = True
            raise InvalidInput(
                f"the fetch from the source repository is over {self.limit} bytes; keep data"
                " files out of the repository, or raise DOCKYARD_MAX_PUSH_BYTES"
            )


def _shown(url: str) -> str:
    """The URL as errors show it: never its user or password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


@dataclass
class Mirror:
    repo: pygit2.Repository
    url: str
    branch: str

    @classmethod
    def open(cls, sources_dir: Path, workspace: str, url: str, branch: str) -> "Mirror":
        check_url(url)
        check_branch(branch)
        path = sources_dir / f"{workspace}.git"
        if (path / "HEAD").exists():
            repo = pygit2.Repository(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            repo = pygit2.init_repository(str(path), bare=True)
        refspec = f"+refs/heads/{branch}:{SOURCE}{branch}"
        if "source" in repo.remotes.names():
            repo.remotes.delete("source")  # the link may have changed its URL or branch
        repo.remotes.create("source", url, refspec)
        return cls(repo, url, branch)

    def fetch(self, credential: Credential, limit: int) -> str:
        """Bring the branch up to the host's; return its head SHA."""
        self._fetch(None, credential, limit)
        ref = self.repo.references.get(SOURCE + self.branch)
        if ref is None:
            raise InvalidInput(f"{_shown(self.url)} has no branch {self.branch!r}")
        return str(ref.target)

    def fetch_pull(self, number: int, credential: Credential, limit: int) -> str:
        """Bring `refs/pull/<number>/head` (a pull request's head, the only way to reach a
        fork's commits) into `refs/dockyard/pulls/<number>`, with the branch's URL,
        credential and size rules; return its SHA."""
        if number <= 0:
            raise InvalidInput(f"{number} is not a pull request number")
        local = f"{PULLS}{number}"
        if self.repo.references.get(local) is not None:
            self.repo.references.delete(local)  # a closed pull request's head is gone
        self._fetch([f"+refs/pull/{number}/head:{local}"], credential, limit)
        ref = self.repo.references.get(local)
        if ref is None:
            raise InvalidInput(f"{_shown(self.url)} has no pull request #{number}")
        return str(ref.target)

    def _fetch(self, refspecs: list[str] | None, credential: Credential, limit: int) -> None:
        pygit2.option(pygit2.enums.Option.SET_SERVER_CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
        pygit2.option(pygit2.enums.Option.SET_SERVER_TIMEOUT, READ_TIMEOUT_MS)
        callbacks = _Callbacks(credential, limit)
        try:
            prune = (
                pygit2.enums.FetchPrune.PRUNE
                if refspecs is None
                else pygit2.enums.FetchPrune.NO_PRUNE
            )
            self.repo.remotes["source"].fetch(refspecs, callbacks=callbacks, prune=prune)
        except pygit2.GitError as exc:
            raise _fetch_error(exc, self.url) from None

    def commit(self, sha: str) -> pygit2.Commit:
        try:
            found = self.repo.get(pygit2.Oid(hex=sha))
        except ValueError:
            found = None
        if not isinstance(found, pygit2.Commit):
            raise InvalidInput(f"commit {sha[:12]} is not on branch {self.branch} of the source")
        return found

    def has(self, sha: str) -> bool:
        try:
            return isinstance(self.repo.get(pygit2.Oid(hex=sha)), pygit2.Commit)
        except ValueError:
            return False

    def contains(self, newer: str, older: str) -> bool:
        """Whether `older` is `newer` or in its history."""
        if newer == older:
            return True
        return bool(self.repo.descendant_of(pygit2.Oid(hex=newer), pygit2.Oid(hex=older)))

    def mark_deployed(self, sha: str) -> None:
        self.repo.references.create(DEPLOYED, pygit2.Oid(hex=sha), force=True)

    def deployed(self) -> str | None:
        ref = self.repo.references.get(DEPLOYED)
        return None if ref is None else str(ref.target)


def check_branch(branch: str) -> None:
    if not pygit2.reference_is_valid_name(f"refs/heads/{branch}") or branch.startswith("-"):
        raise InvalidInput(f"{branch!r} is not a branch name")


def _fetch_error(exc: pygit2.GitError, url: str) -> Exception:
    text = str(exc)
    if "401" in text or "403" in text or "authentication" in text.lower():
        return Unauthorized(f"{_shown(url)} refused the credentials (or none were given)")
    if "404" in text or "not found" in text.lower():
        return InvalidInput(f"no repository at {_shown(url)}, or the credentials cannot see it")
    return Unavailable(f"fetching {_shown(url)} failed: {text}")


@contextmanager
def locked(sources_dir: Path, workspace: str) -> Iterator[None]:
    """One deploy from source at a time per workspace (across threads and processes)."""
    sources_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(sources_dir / f"{workspace}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def files_at(
    repo: pygit2.Repository, commit: pygit2.Commit, subdir: str, max_bytes: int
) -> dict[str, FileEntry]:
    """The files of `commit` below `subdir` ("" for the whole tree), checked like a pushed
    commit's, at most `max_bytes` in all (sizes read from the headers before any content)."""
    tree: pygit2.Object = commit.tree
    shown = subdir.strip("/")
    for part in [p for p in shown.split("/") if p]:
        assert isinstance(tree, pygit2.Tree)
        try:
            tree = repo[tree[part].id]
        except KeyError:
            tree = None  # type: ignore[assignment]
        if not isinstance(tree, pygit2.Tree):
            raise InvalidInput(f"commit {str(commit.id)[:12]} has no folder {shown!r}")
    assert isinstance(tree, pygit2.Tree)
    entries = list(_walk(repo, tree, ""))
    total = sum(int(repo.odb.read_header(oid)[1]) for _path, oid, _mode in entries)
    if total > max_bytes:
        raise InvalidInput(
            f"the workspace at {str(commit.id)[:12]} is {total} bytes, over the limit of"
            f" {max_bytes}; keep data files out of it or raise DOCKYARD_MAX_WORKSPACE_BYTES"
        )
    out = {}
    for path, oid, mode in entries:
        blob = repo[oid]
        if not isinstance(blob, pygit2.Blob):
            raise InvalidInput(f"{path!r} is a malformed tree entry (its mode and object differ)")
        if mode == gitstore.MODE_LINK:
            pushrules.check_link(f"{gitstore.CODE}/{path}", bytes(blob.data))
        out[path] = FileEntry(mode, bytes(blob.data))
    return out


def _walk(
    repo: pygit2.Repository, tree: pygit2.Tree, base: str
) -> Iterator[tuple[str, pygit2.Oid, int]]:
    for entry in tree:
        path = pushrules.entry_path(base, entry.raw_name or b"")
        mode = int(entry.filemode)
        pushrules.check_mode(path, mode)
        if mode == pushrules.MODE_TREE:
            sub = repo[entry.id]
            if not isinstance(sub, pygit2.Tree):
                raise InvalidInput(f"{path!r} is a malformed tree entry")
            yield from _walk(repo, sub, path + "/")
        else:
            yield path, entry.id, mode


def write_files(files: dict[str, FileEntry], dest: Path) -> None:
    """Write checked files into the empty folder `dest`."""
    for rel, entry in sorted(files.items()):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.mode == gitstore.MODE_LINK:
            os.symlink(entry.data.decode(), target)
            continue
        target.write_bytes(entry.data)
        if entry.mode == gitstore.MODE_EXEC:
            target.chmod(0o755)
