"""Deploying a commit from a git host, server side (`controller/gitsource.py`), against real
parts: a bare repository served over git smart HTTP on loopback as "GitHub" (token in HTTP
Basic, `tests/githost.py`), commits pushed to it with the stock git client, and a real
controller (SQLite, workspace repository, reconciler; the shim in the workspace's uv-built
environment, in the sandbox when the machine has one).
"""

import base64
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dockyard import crypto
from dockyard.controller import gitstore, usecases, workspaces
from dockyard.controller.gitsource import GitSource, SourceDeploy, deploy_from_git, plan_from_git
from dockyard.controller.store.models import Run
from tests.githost import GitHost, git
from tests.integration.deployed import ADMIN, WS, Yard, make_yard

BASIC = Path(__file__).parents[1] / "workspaces" / "basic"
TOKEN = "ghs_test_installation_token"
REPO = "acme/pipelines"
JOBS = {
    "jobs.__deployment__.hello",
    "jobs.__deployment__.after_hello",
    "jobs.__deployment__.fails",
    "jobs.__deployment__.sleeper",
    "jobs.__deployment__.napper",
    "jobs.__deployment__.load_numbers",
    "jobs.__deployment__.tiny_api",
    "jobs.workspace.dashboard",
}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[GitHost]:
    githost = GitHost(tmp_path / "host", token=TOKEN).start()
    githost.create("pipelines")
    yield githost
    githost.stop()


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url)


@pytest.fixture
def source(host: GitHost) -> GitSource:
    return GitSource(host.url("pipelines"), "main", "", lambda: TOKEN, REPO)


class Clone:
    """A developer's clone of the source repository: edit, commit, push."""

    def __init__(self, path: Path, host: GitHost) -> None:
        self.path, self.host = path, host

    def commit(self, message: str, files: Mapping[str, str | None] | None = None) -> str:
        for name, text in (files or {}).items():
            target = self.path / name
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git("add", "-A", cwd=self.path)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path)

    def push(self, force: bool = False) -> None:
        self.host.push("pipelines", self.path, force=force)


@pytest.fixture
def clone(tmp_path: Path, host: GitHost) -> Clone:
    path = tmp_path / "clone"
    shutil.copytree(BASIC, path, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    git("init", "-q", "-b", "main", cwd=path)
    made = Clone(path, host)
    made.commit("basic workspace")
    made.push()
    return made


def _head(yard: Yard) -> str | None:
    return gitstore.head_sha(yard.committer.repo)


def _jobs(yard: Yard) -> dict[str, str]:
    return {j["job_ref"]: j["status"] for j in usecases.jobs.list_jobs(yard.ctl, ADMIN, WS)}


def _deployed(outcome: SourceDeploy) -> SourceDeploy:
    assert outcome.status == "deployed", outcome.reason
    return outcome


def test_the_branch_head_is_deployed_like_a_cli_deploy(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    sha = git("rev-parse", "HEAD", cwd=clone.path)

    outcome = _deployed(deploy_from_git(yard.ctl, WS, source))

    assert outcome.source_sha == sha and outcome.workspace_sha == _head(yard)
    assert outcome.summary == "8 added"
    assert _jobs(yard) == dict.fromkeys(JOBS, "active")
    repo = yard.committer.repo
    commit = gitstore.commit_at(repo, _sha(outcome))
    assert commit.message.startswith("deploy: 8 added\n\nadded: jobs.__deployment__.")
    assert commit.message.endswith(f"\n\nSource-Commit: {REPO}@{sha}\n")
    tops = {e.name for e in commit.tree}
    assert tops == {"code", "config", "manifest.yaml", "requirements.json"}
    assert (
        gitstore.read_file(repo, _sha(outcome), "code/__deployment__.py")
        == (BASIC / "__deployment__.py").read_bytes()
    )
    assert gitstore.read_file(repo, _sha(outcome), "config/prod.config.toml")
    # `deployment list` / `deployment info` show the source commit beside the version
    listed = usecases.deployments.versions(yard.ctl, ADMIN, WS, "deployment")
    assert [v["source_commit"] for v in listed] == [f"{REPO}@{sha}"]
    info = usecases.deployments.deployment_info(yard.ctl, ADMIN, WS, None)
    assert info["source_commit"] == f"{REPO}@{sha}"


def test_the_same_head_again_is_unchanged(yard: Yard, clone: Clone, source: GitSource) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))

    again = deploy_from_git(yard.ctl, WS, source)

    assert again.status == "unchanged"
    assert again.workspace_sha == first.workspace_sha == _head(yard)
    assert again.reason == f"{_src(first)[:12]} is already deployed"


def test_an_older_commit_after_a_newer_one_is_a_no_op(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    older = git("rev-parse", "HEAD", cwd=clone.path)
    newer = clone.commit("drop the ad-hoc script", {"adhoc.py": None})
    clone.push()
    _deployed(deploy_from_git(yard.ctl, WS, source))
    head = _head(yard)

    late = deploy_from_git(yard.ctl, WS, source, older)

    assert late.status == "unchanged" and _head(yard) == head
    assert late.reason == f"{older[:12]} is already deployed (its newer {newer[:12]} is)"


def test_a_commit_changing_only_files_outside_the_deployment_creates_no_commit(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))
    ignored = clone.commit("a local database", {"scratch.duckdb": "not shipped"})
    clone.push()

    outcome = deploy_from_git(yard.ctl, WS, source)

    assert outcome.status == "unchanged" and outcome.source_sha == ignored
    assert outcome.reason == f"{ignored[:12]} holds what is deployed already"
    assert _head(yard) == first.workspace_sha
    # remembered: asking again does not rebuild anything
    assert deploy_from_git(yard.ctl, WS, source).reason == f"{ignored[:12]} is already deployed"


def test_a_plaintext_secret_is_refused_and_changes_nothing(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))
    objects = _objects(yard)
    clone.commit("oops", {".dlt/prod.secrets.toml": '[sources.api]\napi_key = "sk-live-123"\n'})
    clone.push()

    outcome = deploy_from_git(yard.ctl, WS, source)

    assert outcome.status == "failed"
    assert outcome.reason.startswith(
        ".dlt/prod.secrets.toml: sources.api.api_key is in clear text; a repository may hold"
        " only sealed values: run `dockyard secrets seal .dlt/prod.secrets.toml -w yard`"
    )
    assert "sk-live-123" not in outcome.reason
    assert _head(yard) == first.workspace_sha
    assert _objects(yard) == objects  # not one object of it was written


def test_a_secret_sealed_for_the_workspace_is_deployed(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    with yard.ctl.db.session() as session:
        key = yard.ctl.keys.sealing_key(session, workspaces.get(session, WS))
    sealed = crypto.encrypt_toml(
        '[sources.api]\napi_key = "sk-live-123"\n',
        ".dlt/prod.secrets.toml",
        previous=None,
        public_key=key.public_key,
        recovery=None,
        fp_key=key.fp_key,
    )
    clone.commit("sealed secret", {".dlt/prod.secrets.toml": sealed})
    clone.push()

    outcome = _deployed(deploy_from_git(yard.ctl, WS, source))

    stored = gitstore.read_file(yard.committer.repo, _sha(outcome), "config/prod.secrets.toml")
    assert stored == sealed.encode()


def test_an_import_error_is_refused_with_file_and_line(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))
    text = (clone.path / "__deployment__.py").read_text()
    clone.commit("broken", {"helper.py": "x = (\n", "__deployment__.py": "import helper\n" + text})
    clone.push()

    outcome = deploy_from_git(yard.ctl, WS, source)

    assert outcome.status == "failed"
    assert outcome.reason == (
        "generating the manifest failed: SyntaxError: '(' was never closed (helper.py, line 1)"
    )
    assert _head(yard) == first.workspace_sha
    assert _jobs(yard) == dict.fromkeys(JOBS, "active")


def test_an_invalid_schedule_is_refused(yard: Yard, clone: Clone, source: GitSource) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))
    text = (clone.path / "__deployment__.py").read_text()
    clone.commit(
        "bad cron",
        {
            "__deployment__.py": text.replace(
                "@run.job\ndef fails", '@run.job(trigger="schedule:61 * * * *")\ndef fails'
            )
        },
    )
    clone.push()

    outcome = deploy_from_git(yard.ctl, WS, source)

    assert outcome.status == "failed" and "61 * * * *" in outcome.reason
    assert _head(yard) == first.workspace_sha


def test_a_force_push_to_an_unrelated_history_is_deployed(
    yard: Yard, clone: Clone, source: GitSource, tmp_path: Path
) -> None:
    _deployed(deploy_from_git(yard.ctl, WS, source))
    shutil.rmtree(clone.path / ".git")
    git("init", "-q", "-b", "main", cwd=clone.path)
    fresh = clone.commit("start over", {"adhoc.py": None})
    clone.push(force=True)

    outcome = _deployed(deploy_from_git(yard.ctl, WS, source))

    assert outcome.source_sha == fresh
    assert outcome.summary == "no job changes"  # adhoc.py went away: code only


def test_a_subfolder_of_the_repository_is_the_workspace(
    yard: Yard, host: GitHost, tmp_path: Path
) -> None:
    mono = tmp_path / "mono"
    shutil.copytree(BASIC, mono / "pipelines" / "basic")
    (mono / "README.md").write_text("not part of the workspace\n")
    git("init", "-q", "-b", "main", cwd=mono)
    clone = Clone(mono, host)
    clone.commit("monorepo")
    clone.push()

    outcome = deploy_from_git(
        yard.ctl, WS, GitSource(host.url("pipelines"), "main", "pipelines/basic", lambda: TOKEN)
    )

    assert _deployed(outcome).summary == "8 added"
    assert gitstore.read_file(yard.committer.repo, _sha(outcome), "code/README.md") is None
    message = gitstore.commit_at(yard.committer.repo, _sha(outcome)).message
    assert f"Source-Commit: {host.url('pipelines')}@{outcome.source_sha}" in message


@pytest.mark.parametrize(
    ("credential", "reason"), [(lambda: None, "refused"), (lambda: "wrong", "refused")]
)
def test_a_missing_or_wrong_token_fails(
    yard: Yard, clone: Clone, host: GitHost, credential: Any, reason: str
) -> None:
    outcome = deploy_from_git(yard.ctl, WS, GitSource(host.url("pipelines"), credential=credential))

    assert outcome.status == "failed" and reason in outcome.reason
    assert TOKEN not in outcome.reason and _head(yard) is None


def test_a_fetch_over_the_push_limit_is_cut_off(
    tmp_path: Path, clone: Clone, source: GitSource
) -> None:
    big = {"data/blob.txt": base64.b64encode(os.urandom(300_000)).decode()}  # incompressible
    clone.commit("a data file", big)
    clone.push()
    gen = make_yard(tmp_path / "small", max_push_bytes=100_000)
    small = next(gen)

    outcome = deploy_from_git(small.ctl, WS, source)

    assert outcome.status == "failed"
    assert outcome.reason.startswith("the fetch from the source repository is over 100000 bytes")
    assert not any(
        (tmp_path / "small" / "sources" / f"{WS}.git" / "objects" / "pack").glob("*.pack")
    )


def test_a_branch_that_does_not_exist_fails(yard: Yard, clone: Clone, host: GitHost) -> None:
    outcome = deploy_from_git(
        yard.ctl, WS, GitSource(host.url("pipelines"), "release", credential=lambda: TOKEN)
    )

    assert outcome.status == "failed" and "has no branch 'release'" in outcome.reason


def test_jobs_of_a_deployed_commit_run(yard: Yard, clone: Clone, source: GitSource) -> None:
    _deployed(deploy_from_git(yard.ctl, WS, source))
    yard.ctl.start()
    try:
        run_id = yard.trigger()
        run = _wait(yard, run_id)
    finally:
        yard.ctl.stop()
    assert run.status == "completed"
    log = (yard.ctl.settings.runs_dir / run_id / "log.jsonl").read_text()
    assert "greeting: hello from prod.config.toml" in log


def _wait(yard: Yard, run_id: str) -> Run:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = yard.run(run_id)
        if run.status in ("completed", "failed", "cancelled", "skipped"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end: {yard.run(run_id).status}")


def _sha(outcome: SourceDeploy) -> str:
    assert outcome.workspace_sha is not None
    return outcome.workspace_sha


def _src(outcome: SourceDeploy) -> str:
    assert outcome.source_sha is not None
    return outcome.source_sha


def _objects(yard: Yard) -> set[str]:
    return {str(oid) for oid in yard.committer.repo.odb}


# pull request plans (`plan_from_git`) --------------------------------------------------------
SCHEDULED = """

@run.job(trigger="schedule:30 7 * * *")
def nightly():
    print("nightly")
"""


def _pull_request(clone: Clone, number: int) -> str:
    """A pull request's head as GitHub keeps it: `fails` gets a schedule, `nightly` is new;
    pushed to `refs/pull/<number>/head` only (no branch of the repository holds it)."""
    text = (clone.path / "__deployment__.py").read_text()
    text = text.replace("@run.job\ndef fails", '@run.job(trigger="schedule:0 6 * * *")\ndef fails')
    text = text.replace('"tiny_api"]', '"tiny_api", "nightly"]') + SCHEDULED
    git("checkout", "-q", "-b", f"pr-{number}", cwd=clone.path)
    sha = clone.commit("schedule fails, add nightly", {"__deployment__.py": text})
    clone.host.push("pipelines", clone.path, f"HEAD:refs/pull/{number}/head")
    git("checkout", "-q", "main", cwd=clone.path)
    return sha


def _next_at(now: datetime, hour: int, minute: int) -> str:
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (at if at > now else at + timedelta(days=1)).isoformat()


def test_a_pull_request_is_planned_and_nothing_is_written(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))
    objects, jobs = _objects(yard), _jobs(yard)
    mirror = yard.ctl.settings.data_dir / "sources" / f"{WS}.git"
    deployed_mark = (mirror / "refs" / "dockyard" / "deployed").read_text()
    sha = _pull_request(clone, 7)

    planned = plan_from_git(yard.ctl, WS, source, 7, sha)

    assert planned.status == "planned", planned.reason
    assert (planned.source_sha, planned.workspace_sha, planned.reason) == (
        sha,
        first.workspace_sha,
        "",
    )
    assert planned.plan is not None
    assert planned.plan.refs("added") == ["jobs.__deployment__.nightly"]
    assert planned.plan.refs("updated") == ["jobs.__deployment__.fails"]
    assert planned.changed_parts == ("code",)
    now = yard.clock.now()
    assert {s["job_ref"]: s["next_fire_at"] for s in planned.schedules} == {
        "jobs.__deployment__.fails": {"schedule:0 6 * * *": _next_at(now, 6, 0)},
        "jobs.__deployment__.nightly": {"schedule:30 7 * * *": _next_at(now, 7, 30)},
    }
    # nothing written: no object in the workspace repository, no job, no deployed mark
    assert _head(yard) == first.workspace_sha and _objects(yard) == objects
    assert _jobs(yard) == jobs
    assert (mirror / "refs" / "dockyard" / "deployed").read_text() == deployed_mark

    # a delivery for a head force-pushed away: the pull request's head now is planned
    moved = plan_from_git(yard.ctl, WS, source, 7, "0" * 40)
    assert moved.status == "planned" and moved.source_sha == sha
    assert moved.reason == (
        f"pull request #7 moved from {'0' * 12} to {sha[:12]} (force-pushed); planned {sha[:12]}"
    )
    # no such pull request
    missing = plan_from_git(yard.ctl, WS, source, 8, sha)
    assert missing.status == "failed"
    assert missing.reason == f"{source.url} has no pull request #8"


def test_a_name_error_at_import_fails_with_file_and_line(
    yard: Yard, clone: Clone, source: GitSource
) -> None:
    first = _deployed(deploy_from_git(yard.ctl, WS, source))
    text = (clone.path / "__deployment__.py").read_text()
    broken = {
        "helper.py": "X = 1\nY = undefined_name\n",
        "__deployment__.py": "import helper\n" + text,
    }
    clone.commit("broken at import", broken)
    clone.push()
    expected = (
        "generating the manifest failed: helper.py:2: NameError:"
        " name 'undefined_name' is not defined"
    )

    outcome = deploy_from_git(yard.ctl, WS, source)

    assert outcome.status == "failed" and outcome.reason == expected
    assert _head(yard) == first.workspace_sha
    # the same commit as a pull request's head: the plan fails with the same line
    sha = git("rev-parse", "HEAD", cwd=clone.path)
    clone.host.push("pipelines", clone.path, "HEAD:refs/pull/3/head")
    planned = plan_from_git(yard.ctl, WS, source, 3, sha)
    assert planned.status == "failed" and planned.reason == expected
