"""The pre-receive hook as git runs it: a local `git push` into a workspace repository.

The hook is installed by `workspaces.create` and runs dockyard's checks on the pushed objects
while they are still in quarantine; a refused push leaves the workspace at its old HEAD.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import pytest

from dockyard.controller import gitstore, manifests, workspaces
from dockyard.controller.gitstore import FileEntry
from dockyard.controller.store.db import Database
from tests.integration.helpers import Committer
from tests.unit import samples
from tests.unit.samples import AFTER_HELLO, HELLO

MAX_BYTES = 20_000


def good_files(*refs: str) -> dict[str, bytes | FileEntry]:
    return {
        gitstore.MANIFEST: manifests.dump_yaml(samples.manifest(*refs)).encode(),
        gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
        "code/__deployment__.py": b"from dlt.hub import run\n",
        "code/helpers/latest.py": FileEntry(gitstore.MODE_LINK, b"../__deployment__.py"),
        "config/config.toml": b'[jobs]\ngreeting = "hi"\n',
    }


@dataclass
class Pusher:
    server: Any  # the workspace's bare repository (pygit2)
    client: Committer  # a separate repository the commits are made in

    def push(self, files: dict[str, bytes | FileEntry], ref: str = "main") -> tuple[str, str]:
        """Commit `files` on the client and push; `(sha, git's stderr)`."""
        sha = self.client.commit(files)
        proc = subprocess.run(
            ["git", "push", "--quiet", self.server.path, f"{gitstore.BRANCH}:refs/heads/{ref}"],
            cwd=self.client.repo.path,
            env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        return sha, proc.stderr if proc.returncode else ""

    def head(self) -> str | None:
        return gitstore.head_sha(gitstore.open_repo(Path(self.server.path)))


@pytest.fixture
def pusher(db: Database, tmp_path: Path) -> Pusher:
    with db.session() as session:
        workspaces.create(
            session, tmp_path / "repos", "demo", workspaces.HookInstaller(sys.executable, MAX_BYTES)
        )
    server = gitstore.open_repo(workspaces.repo_path(tmp_path / "repos", "demo"))
    client = Committer(gitstore.init_bare(tmp_path / "client.git"))
    return Pusher(server, client)


def rejection(stderr: str) -> str:
    """The hook's one line, as the pusher sees it."""
    lines = [ln for ln in stderr.splitlines() if "dockyard: push rejected:" in ln]
    assert len(lines) == 1, stderr
    return lines[0].split("dockyard: push rejected: ", 1)[1].strip()


def test_the_hook_is_installed_executable(pusher: Pusher) -> None:
    hook = Path(pusher.server.path) / "hooks" / "pre-receive"

    assert os.access(hook, os.X_OK)
    assert f"DOCKYARD_MAX_WORKSPACE_BYTES={MAX_BYTES}" in hook.read_text()


def test_a_valid_deployment_is_accepted(pusher: Pusher) -> None:
    sha, error = pusher.push(good_files(HELLO, AFTER_HELLO))

    assert error == ""
    assert pusher.head() == sha


def test_an_invalid_manifest_is_refused_with_one_line(pusher: Pusher) -> None:
    accepted, _ = pusher.push(good_files(HELLO))

    _, error = pusher.push(good_files(AFTER_HELLO))  # its upstream job is missing

    assert rejection(error) == (
        f"invalid manifest: job '{AFTER_HELLO}' has triggers referencing unknown jobs: ['{HELLO}']"
    )
    assert pusher.head() == accepted


def test_a_link_out_of_the_workspace_is_refused(pusher: Pusher) -> None:
    files = good_files(HELLO)
    files["code/passwd"] = FileEntry(gitstore.MODE_LINK, b"../../../../etc/passwd")

    _, error = pusher.push(files)

    assert rejection(error) == (
        "symlink 'code/passwd' points outside the workspace (../../../../etc/passwd)"
    )
    assert pusher.head() is None


def test_an_unexpected_top_level_path_is_refused(pusher: Pusher) -> None:
    files = good_files(HELLO)
    files["notes.txt"] = b"not part of a deployment\n"

    _, error = pusher.push(files)

    assert rejection(error).startswith("unexpected path 'notes.txt'")


def test_a_workspace_over_the_size_limit_is_refused(pusher: Pusher) -> None:
    files = good_files(HELLO)
    files["code/data.csv"] = b"n\n" * MAX_BYTES

    _, error = pusher.push(files)

    assert "over the limit of 20000" in rejection(error)


def test_a_commit_without_requirements_is_refused(pusher: Pusher) -> None:
    files = good_files(HELLO)
    del files[gitstore.REQUIREMENTS]

    sha, error = pusher.push(files)

    assert rejection(error) == f"commit {sha[:12]} has no valid requirements.json"


def test_only_main_can_be_pushed(pusher: Pusher) -> None:
    _, error = pusher.push(good_files(HELLO), ref="feature")

    assert rejection(error) == "only refs/heads/main can be pushed, not refs/heads/feature"


def test_a_submodule_is_refused(pusher: Pusher) -> None:
    files = good_files(HELLO)
    files["code/vendored"] = FileEntry(int(pygit2.enums.FileMode.COMMIT), b"not a commit")

    _, error = pusher.push(files)

    assert rejection(error) == "'code/vendored' is a git submodule; vendor its files instead"
    assert pusher.head() is None
