"""The reconciler against a real migrated SQLite file and a real workspace repository."""

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.controller import gitstore, manifests, workspaces
from dockyard.controller.lifecycle import Deployed, Events
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Reconciliation, Run, Workspace
from dockyard.errors import DockyardError, InvalidInput, NotFound
from tests.integration.helpers import Committer
from tests.unit import samples
from tests.unit.samples import AFTER_HELLO, DASHBOARD, HELLO, SLEEPER, TINY_API

NAME = "demo"
CONFIG = b'[jobs]\ngreeting = "hi"\n'
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
JOB_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE)\s+\"?job\"?\s", re.IGNORECASE)


class NoHooks(workspaces.HookInstaller):
    """Installs nothing: these tests commit with pygit2, no `git push` runs a hook."""

    def __init__(self) -> None:
        super().__init__(sys.executable, 0)

    def __call__(self, repo: Any) -> None:
        return None


@dataclass
class Statements:
    """Every SQL statement the engine sends while recording."""

    seen: list[str] = field(default_factory=list)

    def __call__(self, *args: Any) -> None:
        self.seen.append(str(args[2]))

    def writes(self) -> list[str]:
        return [s for s in self.seen if WRITE.match(s)]

    def job_writes(self) -> list[str]:
        return [s for s in self.seen if JOB_WRITE.match(s)]


@dataclass
class Env:
    db: Database
    repos_dir: Path
    committer: Committer
    reconciler: Reconciler
    changes: list[str]
    statements: Statements

    def deploy(self, *refs: str, config: bytes = CONFIG, code: bytes = b"x = 1\n") -> str:
        return self.deploy_manifest(samples.manifest(*refs), config=config, code=code)

    def deploy_manifest(
        self, manifest: dict[str, Any], config: bytes = CONFIG, code: bytes = b"x = 1\n"
    ) -> str:
        return self.committer.commit(
            {
                gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
                gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
                "code/x.py": code,
                "config/config.toml": config,
            }
        )

    def jobs(self) -> dict[str, Job]:
        with self.db.session() as session:
            return {j.job_ref: j for j in session.scalars(sa.select(Job))}

    def workspace(self) -> Workspace:
        with self.db.session() as session:
            return workspaces.get(session, NAME)


@pytest.fixture
def env(db: Database, tmp_path: Path) -> Iterator[Env]:
    repos_dir = tmp_path / "repos"
    with db.session() as session:
        workspaces.create(session, repos_dir, NAME, NoHooks())
    repo = gitstore.open_repo(workspaces.repo_path(repos_dir, NAME))
    changes: list[str] = []
    events = Events()
    events.subscribe(Deployed, lambda deployed: changes.append(deployed.workspace))
    statements = Statements()
    sa.event.listen(db.engine, "before_cursor_execute", statements)
    yield Env(
        db,
        repos_dir,
        Committer(repo),
        Reconciler(db, repos_dir, events),
        changes,
        statements,
    )
    sa.event.remove(db.engine, "before_cursor_execute", statements)


def test_an_empty_repository_has_nothing_to_reconcile(env: Env) -> None:
    outcome = env.reconciler.reconcile(NAME)

    assert (outcome.sha, outcome.result, outcome.changed) == (None, {}, False)
    assert env.jobs() == {}
    assert env.changes == []


def test_an_unknown_workspace_is_not_found(env: Env) -> None:
    with pytest.raises(NotFound):
        env.reconciler.reconcile("nope")


def test_the_first_deploy_creates_a_row_per_job(env: Env) -> None:
    sha = env.deploy(HELLO, AFTER_HELLO, TINY_API)

    outcome = env.reconciler.reconcile(NAME)

    assert outcome.changed
    assert outcome.sha == sha
    assert outcome.result == {
        "added": [HELLO, AFTER_HELLO, TINY_API],
        "updated": [],
        "unchanged": [],
        "archived": [],
        "sha": sha,
        "summary": "3 added",
        "deployment_version": sha,
        "configuration_version": sha,
    }
    jobs = env.jobs()
    assert sorted(jobs) == sorted([HELLO, AFTER_HELLO, TINY_API])
    for ref, job in jobs.items():
        assert job.status == "active"
        assert job.definition == samples.job(ref)
        assert job.fingerprint == manifests.job_fingerprint(samples.job(ref))
        assert job.created_sha == job.updated_sha == sha
        assert job.archived_at is None
        assert job.runs_created == 0
    assert jobs[TINY_API].job_type == "interactive"
    assert jobs[HELLO].job_type == "batch"
    assert env.changes == [NAME]
    # the statement counter the no-write tests rely on does see job writes
    assert env.statements.job_writes()
    assert all(s.lstrip().upper().startswith("INSERT") for s in env.statements.job_writes())


def test_the_workspace_records_what_was_reconciled(env: Env) -> None:
    sha = env.deploy(HELLO)

    env.reconciler.reconcile(NAME)

    ws = env.workspace()
    assert ws.reconciled_sha == sha
    assert ws.reconciled_at is not None and ws.reconciled_at.tzinfo == UTC
    assert (ws.deployment_version, ws.configuration_version) == (sha, sha)
    assert ws.reconcile_error is None
    with env.db.session() as session:
        (row,) = session.scalars(sa.select(Reconciliation))
        assert (row.sha, row.previous_sha) == (sha, None)
        assert row.result["summary"] == "1 added"


def test_reconciling_the_same_sha_again_changes_and_writes_nothing(env: Env) -> None:
    env.deploy(HELLO, SLEEPER)
    first = env.reconciler.reconcile(NAME)
    before = env.jobs()
    env.statements.seen.clear()

    again = env.reconciler.reconcile(NAME)

    assert not again.changed
    assert again.sha == first.sha
    assert again.result == first.result  # read back from the reconciliation row
    assert env.statements.writes() == []
    assert env.statements.seen  # it did look
    assert env.changes == [NAME]  # no second notification
    assert {r: (j.id, j.updated_at) for r, j in env.jobs().items()} == {
        r: (j.id, j.updated_at) for r, j in before.items()
    }


def test_unchanged_jobs_cost_no_job_writes(env: Env) -> None:
    env.deploy(HELLO, AFTER_HELLO, SLEEPER, DASHBOARD)
    env.reconciler.reconcile(NAME)
    env.statements.seen.clear()
    manifest = samples.manifest(HELLO, AFTER_HELLO, SLEEPER, DASHBOARD)
    manifest["jobs"][2]["execute"]["timeout"] = {"timeout": 30, "grace_period": 5}
    env.deploy_manifest(manifest, code=b"x = 2\n")

    outcome = env.reconciler.reconcile(NAME)

    assert outcome.result["summary"] == "1 updated"
    job_writes = env.statements.job_writes()
    assert len(job_writes) == 1, job_writes
    assert job_writes[0].lstrip().upper().startswith("UPDATE")


def test_a_configuration_only_commit_writes_no_job_rows(env: Env) -> None:
    first = env.deploy(HELLO, SLEEPER)
    env.reconciler.reconcile(NAME)
    env.statements.seen.clear()
    second = env.deploy(HELLO, SLEEPER, config=b'[jobs]\ngreeting = "hello"\n')

    outcome = env.reconciler.reconcile(NAME)

    assert outcome.changed
    assert outcome.result["summary"] == "no job changes"
    assert outcome.result["unchanged"] == [HELLO, SLEEPER]
    assert env.statements.job_writes() == []
    ws = env.workspace()
    assert (ws.reconciled_sha, ws.deployment_version, ws.configuration_version) == (
        second,
        first,
        second,
    )
    assert {j.updated_sha for j in env.jobs().values()} == {first}


def test_a_code_only_commit_moves_the_deployment_version_only(env: Env) -> None:
    first = env.deploy(HELLO)
    env.reconciler.reconcile(NAME)
    second = env.deploy(HELLO, code=b"x = 2\n")

    outcome = env.reconciler.reconcile(NAME)

    assert (outcome.result["deployment_version"], outcome.result["configuration_version"]) == (
        second,
        first,
    )


def test_a_removed_job_is_archived_and_its_row_kept(env: Env) -> None:
    first = env.deploy(HELLO, AFTER_HELLO, SLEEPER)
    env.reconciler.reconcile(NAME)
    before = env.jobs()

    second = env.deploy(HELLO, SLEEPER)
    outcome = env.reconciler.reconcile(NAME)

    assert outcome.result["archived"] == [AFTER_HELLO]
    assert outcome.result["summary"] == "1 archived"
    jobs = env.jobs()
    archived = jobs[AFTER_HELLO]
    assert archived.id == before[AFTER_HELLO].id
    assert archived.status == "archived"
    assert archived.archived_at is not None
    assert archived.updated_sha == second
    assert archived.definition == samples.job(AFTER_HELLO)  # the last deployed definition
    assert [jobs[r].status for r in (HELLO, SLEEPER)] == ["active", "active"]
    assert [jobs[r].updated_sha for r in (HELLO, SLEEPER)] == [first, first]


def add_run(env: Env, job: Job) -> str:
    now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    with env.db.session() as session:
        run = Run(
            id="0b7e5c1e-3f7a-4c55-9d1f-2f8f7d0f4a11",
            workspace_id=job.workspace_id,
            job_id=job.id,
            number=1,
            trigger=f"manual:{job.job_ref}",
            status="completed",
            created_at=now,
            timeout_s=3600.0,
            grace_s=30.0,
        )
        session.add(run)
    return run.id


def test_a_job_deployed_again_is_the_same_row_with_its_history(env: Env) -> None:
    first = env.deploy(HELLO, AFTER_HELLO)
    env.reconciler.reconcile(NAME)
    original = env.jobs()[AFTER_HELLO]
    run_id = add_run(env, original)
    env.deploy(HELLO)
    env.reconciler.reconcile(NAME)

    third = env.deploy(HELLO, AFTER_HELLO)
    outcome = env.reconciler.reconcile(NAME)

    assert outcome.result["added"] == [AFTER_HELLO]
    back = env.jobs()[AFTER_HELLO]
    assert back.id == original.id
    assert back.status == "active"
    assert back.archived_at is None
    assert (back.created_sha, back.updated_sha) == (first, third)
    assert back.created_at == original.created_at
    with env.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.job_id == original.id
    assert len(env.jobs()) == 2


def test_an_updated_job_gets_a_new_fingerprint_and_definition(env: Env) -> None:
    first = env.deploy(HELLO, SLEEPER)
    env.reconciler.reconcile(NAME)
    before = env.jobs()[SLEEPER]
    manifest = samples.manifest(HELLO, SLEEPER)
    manifest["jobs"][1]["triggers"] = ["schedule:*/5 * * * *"]
    manifest["jobs"][1]["default_trigger"] = "schedule:*/5 * * * *"
    second = env.deploy_manifest(manifest)

    outcome = env.reconciler.reconcile(NAME)

    assert outcome.result["updated"] == [SLEEPER]
    after = env.jobs()[SLEEPER]
    assert after.id == before.id
    assert after.fingerprint != before.fingerprint
    assert after.fingerprint == manifests.job_fingerprint(manifest["jobs"][1])
    assert after.definition["default_trigger"] == "schedule:*/5 * * * *"
    assert (after.created_sha, after.updated_sha) == (first, second)
    assert env.jobs()[HELLO].updated_sha == first


def test_a_job_that_changes_type_updates_the_type_column(env: Env) -> None:
    env.deploy(TINY_API)
    env.reconciler.reconcile(NAME)
    manifest = samples.manifest(TINY_API)
    manifest["jobs"][0]["entry_point"]["job_type"] = "batch"
    env.deploy_manifest(manifest)

    env.reconciler.reconcile(NAME)

    assert env.jobs()[TINY_API].job_type == "batch"


def test_invalid_yaml_raises_and_leaves_the_reconciled_state_alone(env: Env) -> None:
    good = env.deploy(HELLO)
    env.reconciler.reconcile(NAME)
    env.committer.commit(
        {
            gitstore.MANIFEST: b"engine_version: 2\njobs: [\n",
            gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
            "code/x.py": b"x = 1\n",
        }
    )

    with pytest.raises(InvalidInput, match=r"manifest\.yaml is not valid YAML"):
        env.reconciler.reconcile(NAME)

    ws = env.workspace()
    head = gitstore.head_sha(env.committer.repo)
    assert head is not None
    # kept for `dockyard info` and a waiting deploy, although the reconcile rolled back
    problem = "manifest.yaml is not valid YAML: did not find expected node content at line 3"
    assert ws.reconcile_error == f"{head[:12]}: {problem}"
    assert ws.reconciled_sha == good
    assert ws.deployment_version == good
    assert [j.status for j in env.jobs().values()] == ["active"]
    assert env.changes == [NAME]


def test_a_fixed_commit_after_a_broken_one_reconciles(env: Env) -> None:
    env.deploy(HELLO)
    env.reconciler.reconcile(NAME)
    env.committer.commit({gitstore.MANIFEST: b"- not\n- a mapping\n"})
    with pytest.raises(InvalidInput):
        env.reconciler.reconcile(NAME)

    fixed = env.deploy(HELLO, SLEEPER)
    outcome = env.reconciler.reconcile(NAME)

    assert outcome.result["added"] == [SLEEPER]
    assert outcome.result["unchanged"] == [HELLO]
    assert env.workspace().reconciled_sha == fixed
    assert env.workspace().reconcile_error is None


def test_a_commit_without_a_manifest_is_refused(env: Env) -> None:
    env.committer.commit({"code/x.py": b"x = 1\n"})

    with pytest.raises(DockyardError, match=r"has no manifest\.yaml"):
        env.reconciler.reconcile(NAME)

    assert env.workspace().reconciled_sha is None
    assert env.jobs() == {}


def test_sweep_reconciles_every_workspace_and_survives_a_broken_one(env: Env) -> None:
    with env.db.session() as session:
        workspaces.create(session, env.repos_dir, "broken", NoHooks())
    broken = Committer(gitstore.open_repo(workspaces.repo_path(env.repos_dir, "broken")))
    broken.commit({gitstore.MANIFEST: b"jobs: [\n"})
    sha = env.deploy(HELLO)

    env.reconciler.sweep()

    assert env.workspace().reconciled_sha == sha
    assert list(env.jobs()) == [HELLO]
    assert env.changes == [NAME]
    with env.db.session() as session:
        assert workspaces.get(session, "broken").reconciled_sha is None


def together(reconciler: Reconciler, barrier: Any, outcomes: list[Any]) -> None:
    barrier.wait()
    outcomes.append(reconciler.reconcile(NAME))


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_controllers_reconciling_one_new_head_together_apply_it_once(env: Env) -> None:
    """Each controller has its own Reconciler (its process lock orders its own threads only):
    on PostgreSQL the workspace row is locked in the write transaction, so of two reconciling
    the same new HEAD at once exactly one applies it (one Deployed, one set of job writes)."""
    import threading

    heard: list[str] = []
    other_events = Events()
    other_events.subscribe(Deployed, lambda deployed: heard.append(deployed.workspace))
    controllers = [env.reconciler, Reconciler(env.db, env.repos_dir, other_events)]
    for round_, refs in enumerate(((HELLO,), (HELLO, AFTER_HELLO), (HELLO, SLEEPER))):
        sha = env.deploy(*refs, code=f"x = {round_}\n".encode())
        env.statements.seen.clear()
        barrier = threading.Barrier(2)
        outcomes: list[Any] = []
        threads = [
            threading.Thread(target=together, args=(r, barrier, outcomes)) for r in controllers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(o.changed for o in outcomes) == [False, True]
        assert {o.sha for o in outcomes} == {sha}
        with env.db.session() as session:
            applied = session.scalar(
                sa.select(sa.func.count())
                .select_from(Reconciliation)
                .where(Reconciliation.sha == sha)
            )
        assert applied == 1
        inserted = [
            s for s in env.statements.job_writes() if s.lstrip().upper().startswith("INSERT")
        ]
        assert len(inserted) <= 1  # the new job of this round, written once
    assert len(env.changes) + len(heard) == 3  # one Deployed per HEAD, across both
    assert sorted(env.jobs()) == sorted([HELLO, AFTER_HELLO, SLEEPER])
