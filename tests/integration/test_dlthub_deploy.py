"""`dlthub deploy`'s server side (`compat/dlthub/deploying.py`) against real parts: packages
built by dlt's own PackageBuilder from a real workspace, a real controller (workspace
repository, key ring, reconciler) and the manifest built by the shim in the workspace's
uv-built environment. The real client against a real server is tests/e2e/test_dlthub_cli.py.
"""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.compat.dlthub import deploying
from dockyard.controller import gitstore, manifests, usecases
from dockyard.errors import InvalidInput
from tests.integration.deployed import ADMIN, WS, Yard, make_yard
from tests.unit import samples
from tests.unit.test_dlthub_packages import dlt_package

BASIC = Path(__file__).parents[1] / "workspaces" / "basic"
SECRET = "sk-dlthub-upload-0123456789abcdef"


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(BASIC, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    (root / ".dlt" / "secrets.toml").write_text(f'[sources.api]\nkey = "{SECRET}"\n')
    return root


package = dlt_package


def code(root: Path) -> tuple[bytes, str]:
    names = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".dlt" not in p.parts and "__pycache__" not in p.parts
    )
    return package(root, names)


def config(root: Path) -> tuple[bytes, str]:
    names = ["config.toml", "prod.config.toml", "secrets.toml"]  # dev.* stays local
    return package(root / ".dlt", names)


def body(jobs: list[dict[str, Any]], dry_run: bool = False) -> dict[str, Any]:
    return {
        "job_definition_engine_version": 2,
        "jobs": jobs,
        "deployment_module": "__deployment__",
        "description": None,
        "dry_run": dry_run,
    }


def deployed_manifest(yard: Yard) -> dict[str, Any]:
    repo = yard.committer.repo
    head = gitstore.head_sha(repo)
    assert head is not None
    data = gitstore.read_file(repo, head, gitstore.MANIFEST)
    assert data is not None
    return manifests.load_yaml(data)


ONE_JOB = samples.manifest(samples.HELLO)["jobs"]


def test_two_uploads_and_a_deploy_make_one_commit_with_secrets_sealed(
    yard: Yard, workspace: Path
) -> None:
    data, code_digest = code(workspace)
    conf, conf_digest = config(workspace)

    staged = deploying.stage(yard.ctl, ADMIN, WS, "code", "d-1", data, b"{}")
    deploying.stage(yard.ctl, ADMIN, WS, "config", "c-1", conf)
    assert gitstore.head_sha(yard.committer.repo) is None  # nothing deployed by an upload
    assert staged.content_hash == code_digest and staged.file_count > 2

    done = deploying.deploy(yard.ctl, ADMIN, WS, body(ONE_JOB))

    # the server's own build of the manifest is what lands (the client's was one job)
    assert done.sha is not None and done.sha == gitstore.head_sha(yard.committer.repo)
    assert len(done.plan.refs("added")) == 8 and done.warnings
    manifest = deployed_manifest(yard)
    assert {j["job_ref"] for j in manifest["jobs"]} >= {"jobs.__deployment__.hello"}
    jobs = {j["job_ref"] for j in usecases.jobs.list_jobs(yard.ctl, ADMIN, WS)}
    assert len(jobs) == 8
    repo_dir = yard.ctl.settings.repos_dir / f"{WS}.git"
    objects = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"],
        cwd=repo_dir,
        capture_output=True,
        check=True,
    ).stdout
    assert SECRET.encode() not in objects and conf_digest.encode() not in objects
    sealed = gitstore.read_file(yard.committer.repo, done.sha, "config/secrets.toml")
    assert sealed is not None and b"ENC[age" in sealed
    assert gitstore.read_file(yard.committer.repo, done.sha, "config/dev.config.toml") is None

    # what `latest` answers is what the client computes, so it uploads nothing next time
    assert deploying.code_hash(yard.ctl, WS, done.sha) == code_digest
    assert deploying.config_hash(yard.ctl, WS, done.sha) == conf_digest

    # `dlthub run` deploys before each launch: the deployed manifest again builds nothing
    again = deploying.deploy(yard.ctl, ADMIN, WS, body(manifest["jobs"]))
    assert again.sha is None and again.plan.is_noop


def test_the_same_files_again_change_nothing(yard: Yard, workspace: Path) -> None:
    for _ in range(2):
        deploying.stage(yard.ctl, ADMIN, WS, "code", "d", code(workspace)[0])
        deploying.stage(yard.ctl, ADMIN, WS, "config", "c", config(workspace)[0])
        done = deploying.deploy(yard.ctl, ADMIN, WS, body(ONE_JOB))
    assert done.sha is None and done.plan.is_noop  # secrets re-sealed to the same ciphertext


def test_a_dry_run_plans_the_clients_manifest_and_writes_nothing(
    yard: Yard, workspace: Path
) -> None:
    deploying.stage(yard.ctl, ADMIN, WS, "code", "d", code(workspace)[0])
    deploying.deploy(yard.ctl, ADMIN, WS, body(ONE_JOB))
    head = gitstore.head_sha(yard.committer.repo)
    jobs = deployed_manifest(yard)["jobs"]
    changed = [j for j in jobs if j["job_ref"] != "jobs.__deployment__.fails"]

    plan = deploying.deploy(yard.ctl, ADMIN, WS, body(changed, dry_run=True))

    assert plan.sha is None and plan.plan.refs("archived") == ["jobs.__deployment__.fails"]
    assert gitstore.head_sha(yard.committer.repo) == head


def test_an_upload_staged_before_another_deploy_is_not_used(yard: Yard, workspace: Path) -> None:
    deploying.stage(yard.ctl, ADMIN, WS, "code", "d", code(workspace)[0])
    yard.deploy()  # another deploy lands meanwhile (`dockyard deploy`, a git host)
    with pytest.raises(InvalidInput, match="no jobs"):
        deploying.deploy(yard.ctl, ADMIN, WS, body([]))
    head = gitstore.head_sha(yard.committer.repo)
    assert head is not None
    done = deploying.deploy(yard.ctl, ADMIN, WS, body(ONE_JOB))
    # the stale upload is not deployed over the newer HEAD
    assert done.sha is None and done.plan.is_noop
    assert gitstore.head_sha(yard.committer.repo) == head
    assert gitstore.read_file(yard.committer.repo, head, "code/__deployment__.py") == b"x = 1\n"


def test_bad_configuration_is_refused_before_anything_is_staged(
    yard: Yard, workspace: Path
) -> None:
    (workspace / ".dlt" / "secrets.toml").write_text("[broken\n")
    with pytest.raises(InvalidInput, match=r"\.dlt/secrets\.toml"):
        deploying.stage(yard.ctl, ADMIN, WS, "config", "c", config(workspace)[0])
    assert deploying.staged(yard.ctl, WS, "config") is None
