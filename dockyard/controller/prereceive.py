"""The pre-receive hook: refuse a push whose tip is not a deployable commit.

git runs this with the pushed objects in quarantine, so it asks the `git` binary (which
honours the quarantine environment) rather than libgit2. Whatever it prints to stderr reaches
the pusher as `remote: …` lines; a non-zero exit rejects the whole push.
"""

import json
import os
import posixpath
import subprocess
import sys
from pathlib import Path

from dockyard import crypto
from dockyard.controller import gitstore, keys, manifests
from dockyard.errors import DockyardError, InvalidInput

ZERO = "0" * 40


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], check=True, capture_output=True).stdout


def check_ref(old: str, new: str, ref: str) -> None:
    if ref != gitstore.BRANCH:
        raise InvalidInput(f"only {gitstore.BRANCH} can be pushed, not {ref}")
    if new == ZERO:
        raise InvalidInput("deleting the deployed branch is not allowed")


def check_tree(sha: str, max_bytes: int) -> None:
    total = 0
    for record in git("ls-tree", "-r", "-l", "-z", sha).split(b"\0"):
        if not record:
            continue
        meta, path_b = record.split(b"\t", 1)
        mode, _kind, oid, size = meta.decode().split()
        path = path_b.decode()
        gitstore.check_path(path)
        if path.split("/")[0] not in gitstore.TOP_LEVEL:
            raise InvalidInput(
                f"unexpected path {path!r}: a commit holds only code/, config/,"
                " manifest.yaml and requirements.json"
            )
        total += int(size) if size != "-" else 0
        if mode == "160000":
            raise InvalidInput(f"{path!r} is a git submodule; vendor its files instead")
        if mode == "120000":
            check_link(path, git("cat-file", "blob", oid).decode())
    if total > max_bytes:
        raise InvalidInput(
            f"workspace is {total} bytes, over the limit of {max_bytes};"
            " exclude data files in .gitignore or raise DOCKYARD_MAX_WORKSPACE_BYTES"
        )


def check_link(path: str, target: str) -> None:
    top = path.split("/")[0]
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if target.startswith("/") or not resolved.startswith(top + "/"):
        raise InvalidInput(f"symlink {path!r} points outside the workspace ({target})")


def check_contents(sha: str) -> None:
    try:
        text = git("cat-file", "blob", f"{sha}:{gitstore.MANIFEST}")
    except subprocess.CalledProcessError as exc:
        raise InvalidInput(f"commit {sha[:12]} has no {gitstore.MANIFEST}") from exc
    manifests.validate(manifests.load_yaml(text))
    try:
        requirements = json.loads(git("cat-file", "blob", f"{sha}:{gitstore.REQUIREMENTS}"))
    except (subprocess.CalledProcessError, ValueError) as exc:
        raise InvalidInput(f"commit {sha[:12]} has no valid {gitstore.REQUIREMENTS}") from exc
    if not isinstance(requirements, dict) or "dlt_version" not in requirements:
        raise InvalidInput(f"{gitstore.REQUIREMENTS} is not a dlt requirements manifest")


def check_secrets(sha: str, git_dir: Path) -> None:
    """Every value of every `*.secrets.toml` must be encrypted for the workspace's current
    key: a plaintext secret never enters the repository, not even by a hand-made push."""
    accepted = keys.published(git_dir).get("current")
    names = git("ls-tree", "-r", "--name-only", "-z", sha, f"{gitstore.CONFIG}/").split(b"\0")
    for name in (n.decode() for n in names if n):
        if not name.endswith("secrets.toml"):
            continue
        text = git("cat-file", "blob", f"{sha}:{name}").decode("utf-8", "replace")
        crypto.check_sealed(text, name, [accepted] if isinstance(accepted, str) else [])


def main() -> int:
    max_bytes = int(os.environ.get("DOCKYARD_MAX_WORKSPACE_BYTES", "52428800"))
    try:
        for line in sys.stdin.read().splitlines():
            old, new, ref = line.split()
            check_ref(old, new, ref)
            check_tree(new, max_bytes)
            check_contents(new)
            check_secrets(new, Path(os.environ.get("GIT_DIR", ".")))
    except DockyardError as exc:
        sys.stderr.write(f"dockyard: push rejected: {exc.message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
