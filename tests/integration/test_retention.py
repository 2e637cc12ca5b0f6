"""Retention on a real controller: real run folders, real checkouts from a real repository,
environment folders where the local executor keeps them (issue 10, item 13).

Runs are aged by moving the controller's clock (their end time comes from it); checkouts and
environments by moving their modification time back, which is what days without use do.
"""

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.clock import FakeClock
from dockyard.controller import envs, gitstore, leases, logs, retention, usecases, workspaces
from dockyard.controller.store.models import Run
from tests.integration.deployed import ADMIN, WS, Yard, make_yard
from tests.unit import samples

DAY = 86400.0


@pytest.fixture
def yard(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Yard]:
    for made in make_yard(tmp_path / "data", db_url=database_url):
        # a deploy starts a real uv build of its jobs' environments in the background; here
        # the tests make the environment folders themselves, and the build would race them
        monkeypatch.setattr(made.ctl.runner, "prebuild", lambda workspace: None)
        yield made


def sweeper(yard: Yard, **windows: float) -> retention.Retention:
    ctl = yard.ctl
    return retention.Retention(
        ctl.db, yard.clock, ctl.preparer, ctl._local_envs, retention.Windows(**windows)
    )


def ended_run(yard: Yard, status: str = "completed") -> str:
    """A run that wrote a log and some files, then ended now."""
    run_id = yard.trigger()
    yard.move(run_id, "running")
    run_dir = yard.ctl.preparer.run_dir(run_id)
    logs.system(run_dir, "starting")
    logs.append(run_dir, "out", "secret-looking output", None)
    (run_dir / "exit.json").write_text("{}")
    (run_dir / "dlt").mkdir()
    yard.move(run_id, status)
    return run_id


def log_lines(yard: Yard, run_id: str) -> list[str]:
    return [line["m"] for line in usecases.runs.run_logs(yard.ctl, ADMIN, run_id)["lines"]]


def bytecode_of(yard: Yard, folder: Path, workspace: str = "ws") -> Path:
    """Where PYTHONPYCACHEPREFIX puts the bytecode of a folder's modules (one prefix per
    workspace: `<data>/pycache/<workspace>`)."""
    cache = yard.ctl.settings.data_dir / "pycache" / workspace
    return cache / folder.absolute().relative_to("/")


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


# runs ------------------------------------------------------------------------------------------
def test_an_old_runs_folder_is_emptied_and_its_log_says_so(yard: Yard) -> None:
    yard.deploy()
    old = ended_run(yard)
    yard.clock.advance(20 * DAY)
    recent = ended_run(yard, "failed")
    yard.clock.advance(11 * DAY)  # old ended 31 days ago, recent 11

    sweeper(yard, runs_days=30).runs()

    (line,) = log_lines(yard, old)
    assert "removed by retention" in line
    assert "DOCKYARD_RETAIN_RUNS_DAYS" in line
    assert sorted(p.name for p in yard.ctl.preparer.run_dir(old).iterdir()) == [
        retention.MARKER,
        logs.LOG_NAME,
    ]
    assert yard.run(old).status == "completed"  # the row stays
    assert log_lines(yard, recent) == ["starting", "secret-looking output"]


def test_emptying_is_done_once(yard: Yard) -> None:
    yard.deploy()
    old = ended_run(yard)
    yard.clock.advance(31 * DAY)
    sweeper(yard, runs_days=30).runs()
    again = sweeper(yard, runs_days=30)  # a restarted server starts from the beginning
    again.runs()
    assert len(log_lines(yard, old)) == 1


def test_an_active_runs_folder_is_never_touched(yard: Yard) -> None:
    yard.deploy()
    run_id = yard.trigger()
    yard.move(run_id, "running")
    logs.system(yard.ctl.preparer.run_dir(run_id), "still going")
    yard.clock.advance(365 * DAY)
    sweeper(yard, runs_days=30).runs()
    assert log_lines(yard, run_id) == ["still going"]


def test_many_old_runs_are_done_in_batches(yard: Yard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 2)
    yard.deploy()
    ids = [ended_run(yard) for _ in range(5)]
    yard.clock.advance(31 * DAY)
    loop = sweeper(yard, runs_days=30)
    assert [loop.runs() for _ in range(3)] == [True, True, False]
    assert all(len(log_lines(yard, i)) == 1 for i in ids)


def test_zero_days_keeps_runs_forever(yard: Yard) -> None:
    yard.deploy()
    old = ended_run(yard)
    yard.clock.advance(3650 * DAY)
    sweeper(yard, runs_days=0).runs()
    assert len(log_lines(yard, old)) == 2


# checkouts -----------------------------------------------------------------------------------
def checkout(yard: Yard, sha: str) -> Path:
    repo = gitstore.open_repo(workspaces.repo_path(yard.ctl.settings.repos_dir, WS))
    return yard.ctl.preparer.checkout(repo, WS, sha)


def test_checkouts_of_old_deployments_go_the_current_one_stays(yard: Yard) -> None:
    v1 = yard.deploy(b"x = 1\n")
    v2 = yard.deploy(b"x = 2\n")
    old, current = checkout(yard, v1), checkout(yard, v2)
    age(old, 8)
    age(current, 8)
    bytecode = bytecode_of(yard, old)  # what local runs of it compiled
    bytecode.mkdir(parents=True)
    (bytecode / "__deployment__.cpython-311.pyc").write_bytes(b"pyc")

    sweeper(yard, checkouts_days=7).checkouts()

    assert not old.exists()
    assert not bytecode.exists()
    assert bytecode.parent.exists()
    assert (current / "__deployment__.py").read_bytes() == b"x = 2\n"
    left = sorted(os.listdir(old.parent))
    assert left == [f".{v2}.lock", v2]  # nothing left aside; the old one's lock file gone


def test_a_checkout_used_recently_or_by_an_active_run_stays(yard: Yard) -> None:
    v1 = yard.deploy(b"x = 1\n")
    run_id = yard.trigger()  # runs v1
    yard.move(run_id, "running")
    v2 = yard.deploy(b"x = 2\n")
    v3 = yard.deploy(b"x = 3\n")
    used_by_run, recent = checkout(yard, v1), checkout(yard, v2)
    checkout(yard, v3)
    age(used_by_run, 100)
    age(recent, 6)

    sweeper(yard, checkouts_days=7).checkouts()
    assert used_by_run.exists()
    assert recent.exists()

    yard.move(run_id, "completed")
    sweeper(yard, checkouts_days=7).checkouts()
    assert not used_by_run.exists()


def test_a_checkout_taken_while_retention_decides_stays(yard: Yard) -> None:
    """The race: retention has found the checkout unused; a run being prepared takes it just
    before it is removed. Taking it touches it under the lock removal takes, so it stays."""
    v1 = yard.deploy(b"x = 1\n")
    yard.deploy(b"x = 2\n")
    target = checkout(yard, v1)
    age(target, 8)
    loop = sweeper(yard, checkouts_days=7)
    assert f"{WS}/{v1}" not in loop.in_use().checkouts  # decided: unused

    taken = checkout(yard, v1)  # a run prepares now

    loop.checkouts()
    assert taken.exists()


def test_a_checkout_removed_is_made_again_when_a_run_needs_it(yard: Yard) -> None:
    v1 = yard.deploy(b"x = 1\n")
    yard.deploy(b"x = 2\n")
    age(checkout(yard, v1), 8)
    sweeper(yard, checkouts_days=7).checkouts()
    assert (checkout(yard, v1) / "__deployment__.py").read_bytes() == b"x = 1\n"


# environments ----------------------------------------------------------------------------------
def env_dir(yard: Yard, key: str, days_unused: float) -> Path:
    path = yard.ctl.settings.envs_dir / key
    path.mkdir(parents=True)
    (path / envs.READY).write_text("{}")
    age(path / envs.READY, days_unused)
    return path


def hello_env_key() -> str:
    return envs.env_spec(samples.requirements(), samples.job(samples.HELLO)).key


def test_unused_environments_go_those_of_current_jobs_and_active_runs_stay(yard: Yard) -> None:
    yard.deploy()
    run_id = yard.trigger()
    yard.move(run_id, "running")
    with yard.ctl.db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.env_hash = "e" * 32
    current = env_dir(yard, hello_env_key(), 30)
    of_active_run = env_dir(yard, "e" * 32, 30)
    unused = env_dir(yard, "0" * 32, 15)
    recently_used = env_dir(yard, "1" * 32, 13)
    bytecode_of(yard, unused).mkdir(parents=True)
    bytecode_of(yard, unused, "other").mkdir(parents=True)  # environments are shared

    sweeper(yard, envs_days=14).environments()

    assert current.exists()
    assert of_active_run.exists()
    assert not unused.exists()
    assert not bytecode_of(yard, unused).exists()
    assert not bytecode_of(yard, unused, "other").exists()
    assert recently_used.exists()


def test_a_prepared_held_run_keeps_its_checkout_and_environment(yard: Yard) -> None:
    """A run prepared ahead of its tick has no row yet: its folder says what it uses."""
    v1 = yard.deploy(b"x = 1\n")
    yard.deploy(b"x = 2\n")
    code = checkout(yard, v1)
    age(code, 30)
    env = env_dir(yard, "2" * 32, 30)
    held = "0b7e5c1e-3f7a-4c55-9d1f-2f8f7d0f4a11"
    runs_dir = yard.ctl.settings.runs_dir
    (runs_dir / ".prewarm").mkdir(parents=True, exist_ok=True)
    (runs_dir / ".prewarm" / held).touch()
    (runs_dir / held).mkdir()
    spec = {"cwd": str(code), "env": {"VIRTUAL_ENV": str(env)}, "held": True}
    (runs_dir / held / "spec.json").write_text(json.dumps(spec))

    loop = sweeper(yard, checkouts_days=7, envs_days=14)
    loop.checkouts()
    loop.environments()

    assert code.exists()
    assert env.exists()


def test_an_environment_taken_while_retention_decides_stays(yard: Yard) -> None:
    builder = yard.ctl._local_envs()
    assert builder is not None
    spec = envs.EnvSpec("3.11", ("dlt==1.31.0",))
    env = env_dir(yard, spec.key, 30)
    loop = sweeper(yard, envs_days=14)
    assert env.name not in loop.in_use().envs  # decided: unused

    builder.ensure(spec, print)  # a run prepares now: the environment is ready, taken as is

    loop.environments()
    assert env.exists()


# under a lease (several servers on one database) -------------------------------------------
def test_retention_runs_only_in_the_holder_of_its_lease_and_stops_once_it_is_lost(
    yard: Yard,
) -> None:
    yard.deploy()
    old = ended_run(yard)
    yard.clock.advance(31 * DAY)
    mine = yard.ctl.leases.guard(leases.RETENTION)
    other_clock = FakeClock(yard.clock.now())
    other = leases.Leases(yard.ctl.db, other_clock, "other-server:1:00", 10.0)
    assert other.hold(leases.RETENTION, None) == 1

    mine.refresh()
    assert mine.held() is None
    yard.ctl.retention.step()  # another server's work: nothing removed here
    assert len(log_lines(yard, old)) == 2

    assert other.release(leases.RETENTION, 1)
    mine.refresh()  # released: this server takes it (epoch 2)
    assert mine.held() is not None
    other_clock.advance(11)  # this server paused past its expiry: the other takes it over
    assert other.hold(leases.RETENTION, None) == 3
    assert mine.held() is not None  # this server, by its own clock, still believes it holds it
    yard.ctl.retention.step()  # believed held, but the check before removing refuses
    assert len(log_lines(yard, old)) == 2

    assert other.release(leases.RETENTION, 3)
    mine.refresh()
    yard.ctl.retention.step()
    (line,) = log_lines(yard, old)
    assert "removed by retention" in line
