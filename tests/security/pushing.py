"""Hand-made commits pushed to a real server with the stock git client (what an attacker with a
deploy token can send without dockyard's CLI), and the server's repository as it is on disk."""

import hashlib
import json
import os
import re
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pygit2

from dockyard.controller import gitstore, manifests
from dockyard.controller.gitstore import FileEntry
from tests.conftest import Server
from tests.integration.helpers import Committer
from tests.unit import samples
from tests.unit.samples import HELLO

Files = dict[str, bytes | FileEntry]


def good_files(*refs: str) -> Files:
    """A deployable commit: a valid manifest, requirements, the entry module and config."""
    return {
        gitstore.MANIFEST: manifests.dump_yaml(samples.manifest(*(refs or (HELLO,)))).encode(),
        gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
        "code/__deployment__.py": b"from dlt.hub import run\n",
        "code/helpers/latest.py": FileEntry(gitstore.MODE_LINK, b"../__deployment__.py"),
        "config/config.toml": b'[jobs]\ngreeting = "hi"\n',
    }


def link(target: str | bytes) -> FileEntry:
    return FileEntry(gitstore.MODE_LINK, target if isinstance(target, bytes) else target.encode())


def git_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
        "GIT_TERMINAL_PROMPT": "0"
    }


@dataclass
class Remote:
    """One workspace on a real server, and a client repository whose `main` is pushed to it."""

    server: Server
    name: str
    client: Committer

    @classmethod
    def create(cls, server: Server, name: str, tmp: Path) -> "Remote":
        response = server.api("POST", "/api/v1/workspaces", json={"name": name})
        assert response.status_code == 201, response.text
        return cls(server, name, Committer(gitstore.init_bare(tmp / f"{name}-client.git")))

    @property
    def url(self) -> str:
        return f"{self.server.url}/git/{self.name}.git"

    @property
    def path(self) -> Path:
        return self.server.data_dir / "repos" / f"{self.name}.git"

    def token(self, role: str, workspace: str | None = None) -> str:
        body = {"name": f"{role}-{workspace}", "role": role, "workspace": workspace}
        response = self.server.api("POST", "/api/v1/tokens", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def commit(self, files: Mapping[str, bytes | FileEntry], message: str = "deploy") -> str:
        return self.client.commit(files, message)

    def push(self, token: str | None = None) -> str:
        """Push the client's `main` with the stock git client; git's stderr when refused."""
        header = f"http.extraHeader=Authorization: Bearer {token or self.server.token}"
        proc = subprocess.run(
            ["git", "-c", header, "push", "--quiet", self.url, f"{gitstore.BRANCH}:main"],
            cwd=self.client.repo.path,
            env=git_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return proc.stderr if proc.returncode else ""

    def head(self) -> str | None:
        return gitstore.head_sha(gitstore.open_repo(self.path))

    def has(self, oid: str) -> bool:
        """Whether the server's repository holds the object anywhere (also unreachable)."""
        return pygit2.Oid(hex=oid) in gitstore.open_repo(self.path).odb

    def leftovers(self) -> list[str]:
        """Quarantine directories an aborted push left behind."""
        return sorted(p.name for p in (self.path / "objects").glob("tmp_objdir-incoming-*"))

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.server.token}"}
        return httpx.get(f"{self.server.url}{path}", headers=headers, timeout=60, **kwargs)


def workspace_name(request: Any) -> str:
    """A workspace name for a test (parametrized ones included), unique on the server."""
    node = str(request.node.name)
    slug = re.sub(r"[^a-z0-9]+", "-", node.lower())[:40].strip("-")
    return f"{slug}-{hashlib.sha1(node.encode()).hexdigest()[:6]}"


def blob_oid(data: bytes) -> str:
    return str(pygit2.hash(data))


def rejection(stderr: str) -> str:
    """The hook's one line, as the pusher sees it."""
    lines = [ln for ln in stderr.splitlines() if "dockyard: push rejected:" in ln]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0].split("dockyard: push rejected: ", 1)[1].strip()


Tree = dict[bytes, "bytes | FileEntry | Tree"]


def _git(repo: Path, *args: str, data: bytes = b"") -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, input=data, capture_output=True, env=git_env(), check=True
    )
    return proc.stdout.decode().strip()


def raw_tree(repo: Path, tree: Tree) -> str:
    """A tree written with git's plumbing, which (unlike libgit2's index) takes any name:
    `.git`, bytes that are not UTF-8."""
    lines = []
    for name, value in sorted(tree.items()):
        if isinstance(value, dict):
            mode, kind, oid = "040000", "tree", raw_tree(repo, value)
        else:
            entry = value if isinstance(value, FileEntry) else FileEntry(gitstore.MODE_FILE, value)
            mode, kind = f"{entry.mode:o}", "blob"
            oid = _git(repo, "hash-object", "-w", "--stdin", data=entry.data)
        lines.append(f"{mode} {kind} {oid}\t".encode() + name + b"\0")
    return _git(repo, "mktree", "-z", data=b"".join(lines))


def nest(files: Files) -> Tree:
    """`good_files()`-style paths as a nested tree."""
    root: Tree = {}
    for path, value in files.items():
        *dirs, leaf = path.encode().split(b"/")
        node = root
        for part in dirs:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        node[leaf] = value
    return root


def raw_commit(remote: Remote, tree: Tree, message: str = "by hand") -> str:
    """A commit of `tree` on the client's `main`, made with git's plumbing."""
    repo = Path(remote.client.repo.path)
    parent = gitstore.head_sha(remote.client.repo)
    args = ["commit-tree", raw_tree(repo, tree), "-m", message]
    if parent:
        args += ["-p", parent]
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        env=git_env() | env | {"GIT_COMMITTER_EMAIL": "t@t"},
        check=True,
    )
    sha = proc.stdout.decode().strip()
    _git(repo, "update-ref", gitstore.BRANCH, sha)
    return sha


def pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


def pack_of(remote: Remote, *oids: str, exclude: str | None = None) -> bytes:
    """A pack of every object reachable from `oids` (minus what `exclude` reaches), made
    with `git pack-objects` in the client repository."""
    repo = Path(remote.client.repo.path)
    objects = _git(repo, "rev-list", "--objects", *oids, *([f"^{exclude}"] if exclude else []))
    listing = "\n".join(line.split(" ", 1)[0] for line in objects.splitlines()) + "\n"
    proc = subprocess.run(
        ["git", "pack-objects", "--stdout", "-q"],
        cwd=repo,
        input=listing.encode(),
        capture_output=True,
        env=git_env(),
        check=True,
    )
    return proc.stdout


def receive_pack(
    remote: Remote, old: str, new: str, pack: bytes, token: str | None = None
) -> tuple[int, str, str]:
    """A push sent by hand (git's smart HTTP protocol): `(status, report, remote messages)`."""
    command = f"{old} {new} {gitstore.BRANCH}\0report-status side-band-64k\n".encode()
    response = httpx.post(
        f"{remote.url}/git-receive-pack",
        content=pkt(command) + b"0000" + pack,
        headers={
            "Authorization": f"Bearer {token or remote.server.token}",
            "Content-Type": "application/x-git-receive-pack-request",
        },
        timeout=120,
    )
    report, messages = demux(response.content) if response.status_code == 200 else (b"", b"")
    return (
        response.status_code,
        report.decode(errors="replace"),
        messages.decode("utf-8", "replace"),
    )


def demux(data: bytes) -> tuple[bytes, bytes]:
    """Side-band channel 1 (the report, itself pkt-lines) and channel 2 (remote messages)."""
    report, messages = b"", b""
    while len(data) >= 4:
        size = int(data[:4], 16)
        if size == 0:
            data = data[4:]
            continue
        body, data = data[4:size], data[size:]
        if body[:1] == b"\1":
            report += body[1:]
        elif body[:1] in (b"\2", b"\3"):
            messages += body[1:]
    lines = []
    while len(report) >= 4:
        size = int(report[:4], 16)
        lines.append(report[4:size] if size else b"")
        report = report[size or 4 :]
    return b"".join(lines), messages


def raw_request(server: Server, head: str, body: bytes = b"", read_first: bool = False) -> bytes:
    """One HTTP/1.1 request sent byte for byte (no client normalising the path), the answer.
    With `read_first`, the answer is read before any body byte is sent."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        if not read_first:
            sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if read_first and _complete(answer):
                break
    return answer


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return bool(sep) and (length is None or len(body) >= int(length.group(1)))


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])
