"""Rollback refusals that a real server cannot be led into by a user: a deployment whose
secrets no key of the workspace opens, and one the receive hook's checks refuse. Each leaves
`main` where it was (a real controller, SQLite file and bare repository; `controller/rollback`)."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import crypto
from dockyard.controller import gitstore, manifests, usecases, workspaces
from dockyard.errors import InvalidInput
from tests.integration.deployed import ADMIN, WS, Yard, make_yard
from tests.unit import samples


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url)


def files(**extra: bytes) -> dict[str, bytes]:
    return {
        gitstore.MANIFEST: manifests.dump_yaml(samples.manifest(samples.HELLO)).encode(),
        gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
        "code/__deployment__.py": b"x = 0\n",
        **extra,
    }


def head(yard: Yard) -> str | None:
    repo = gitstore.open_repo(workspaces.repo_path(yard.ctl.settings.repos_dir, WS))
    return gitstore.head_sha(repo)


def test_secrets_no_workspace_key_opens_are_refused(yard: Yard) -> None:
    _, stranger = crypto.new_identity()  # a key this workspace never had
    sealed = crypto.encrypt_toml(
        '[sources.api]\nkey = "v"\n',
        "prod.secrets.toml",
        previous=None,
        public_key=stranger,
        recovery=None,
        fp_key=b"k" * 32,
    )
    old = yard.committer.commit(files(**{"config/prod.secrets.toml": sealed.encode()}))
    yard.deploy()
    before = head(yard)
    with pytest.raises(InvalidInput, match=f"cannot seal {old[:12]}'s secrets for the current key"):
        usecases.deployments.rollback_to(yard.ctl, ADMIN, WS, old, force=False)
    assert head(yard) == before


def test_what_the_hook_refuses_is_refused(yard: Yard) -> None:
    broken = files()
    del broken[gitstore.REQUIREMENTS]  # written without the hook: the hook would refuse it
    old = yard.committer.commit(broken)
    yard.deploy()
    before = head(yard)
    with pytest.raises(InvalidInput, match=r"no valid requirements\.json"):
        usecases.deployments.rollback_to(yard.ctl, ADMIN, WS, old, force=False)
    assert head(yard) == before
