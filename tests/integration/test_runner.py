"""The runner's whole path — claim, prepare, start, deadline, stop, finish, follow-up,
recovery — with a `FakeExecutor` and a `FakeClock`: a real SQLite file, a real workspace
repository and the real preparer (checkout, configuration), no process. The e2e tests run the
same path with real processes (`tests/e2e/test_lifecycle.py`, `test_crash.py`)."""

import json
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dockyard.clock import FakeClock, utcnow
from dockyard.controller import (
    auth,
    gitstore,
    manifests,
    runs,
    runtime_config,
    usecases,
    workspaces,
)
from dockyard.controller.assembly import Controller
from dockyard.controller.executors.fake import FakeExecutor
from dockyard.controller.executors.fleet import Fleet
from dockyard.controller.lifecycle import IllegalMove, Lifecycle, Request, RunStatus, move
from dockyard.controller.prepare import Preparer
from dockyard.controller.runner import Runner
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.settings import Settings
from tests.conftest import copy_database, new_database_url
from tests.integration.helpers import Committer
from tests.unit import samples

WS = "yard"
ADMIN = auth.Principal(1, "admin", None)
SIGTERM, SIGKILL = int(signal.SIGTERM), int(signal.SIGKILL)


@dataclass
class Bench:
    db: Database
    clock: FakeClock
    fake: FakeExecutor
    lifecycle: Lifecycle
    preparer: Preparer
    runner: Runner

    def trigger(self, name: str = "hello") -> str:
        """A manual run of the job, as `dockyard launch` makes it (not gated)."""
        with self.db.session() as session:
            ws = workspaces.get(session, WS)
            job = runs.find_job(session, ws, name)
            request = Request(f"manual:{job.job_ref}", gated=False)
            run_id = self.lifecycle.create(session, ws, job, request, self.clock.now()).id
        # two launches are never made at one instant (runs made at one instant, like one
        # tick's fires, start in id order): the queue's order is the launches'
        self.clock.advance(0.001)
        return run_id

    def cancel(self, run_id: str) -> RunStatus:
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            return self.lifecycle.cancel(session, run, self.clock.now())

    def tick(self) -> None:
        """One runner tick, then wait for the preparations it handed to its pool."""
        self.runner.tick()
        self.runner.settle()

    def run(self, run_id: str) -> Run:
        with self.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            return run

    def runs(self) -> list[Run]:
        with self.db.session() as session:
            return list(session.scalars(select(Run).order_by(Run.created_at, Run.number)))

    def restart(self) -> Runner:
        """A new runner on the same database and 'processes' (a controller restart)."""
        self.runner.on_stop()
        self.runner = Runner(self.db, self.clock, self.fake, self.preparer, self.lifecycle)
        self.runner.recover()
        return self.runner


def deploy(ctl: Controller, *jobs: dict[str, object]) -> None:
    repo = gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, WS))
    manifest = {**samples.manifest(), "jobs": list(jobs)}
    Committer(repo).commit(
        {
            gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
            gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
            "code/__deployment__.py": b"x = 1\n",
        }
    )
    ctl.reconciler.reconcile(WS)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, engine: str) -> tuple[Path, str]:
    """A data dir and database made once by a real controller: migrated database, workspace,
    keys and repository with hello → after_hello, a sleeper (timeout 3 s, grace 1 s) and an app
    deployed."""
    data_dir = tmp_path_factory.mktemp("runner") / "data"
    url = new_database_url(engine, data_dir.parent)
    settings = Settings(data_dir=data_dir, db_url=url, start_loops=False, admin_token="t" * 32)
    ctl = Controller(settings, clock=FakeClock(utcnow()), executor=FakeExecutor())
    ctl.bootstrap()
    usecases.workspaces.create_workspace(ctl, ADMIN, WS)
    sleeper, app = samples.job(samples.SLEEPER), samples.job(samples.TINY_API)
    deploy(ctl, samples.job(samples.HELLO), samples.job(samples.AFTER_HELLO), sleeper, app)
    ctl.runner.on_stop()  # the deploy's environment prebuild (fake) ends with the pool
    ctl.db.dispose()
    return data_dir, url


@pytest.fixture
def bench(deployed: tuple[Path, str], tmp_path: Path) -> Iterator[Bench]:
    """A copy of the deployed data dir and the runner's parts built on it (no Controller:
    no migrations, no sandbox probe), so each test starts from the same state in ms."""
    data_dir = tmp_path / "data"
    shutil.copytree(deployed[0], data_dir)
    url = copy_database(deployed[1], tmp_path)
    settings = Settings(data_dir=data_dir, db_url=url, start_loops=False)
    clock = FakeClock(utcnow())
    db = Database(settings.database_url)
    fake = FakeExecutor()
    lifecycle = Lifecycle(settings.repos_dir, runtime_config.Defaults(7200.0, 30.0))
    preparer = Preparer(settings, Fleet("local", {"local": lambda: fake}), b"k" * 32, db=db)
    runner = Runner(db, clock, fake, preparer, lifecycle)
    yield Bench(db, clock, fake, lifecycle, preparer, runner)
    runner.on_stop()
    db.dispose()


def test_a_triggered_run_is_claimed_prepared_and_started_once(bench: Bench) -> None:
    run_id = bench.trigger()
    assert bench.run(run_id).status == "pending"
    bench.tick()
    bench.tick()
    run = bench.run(run_id)
    assert run.status == "running" and run.started_at == bench.clock.now()
    assert bench.fake.started() == [run_id]
    plan = bench.fake.runs[run_id].plan
    assert plan.launch_args is not None and plan.launch_args[:2] == ["--run-id", run_id]
    assert (plan.code / "__deployment__.py").read_text() == "x = 1\n"  # the real checkout
    assert run.deadline_at is not None and run.entry_point is not None


def test_a_clean_exit_completes_and_removes_the_run_configuration(bench: Bench) -> None:
    run_id = bench.trigger()
    bench.tick()
    settings_dir = bench.fake.runs[run_id].plan.settings
    assert settings_dir.exists()
    bench.fake.exit(run_id, 0)
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.exit_code, run.reason) == ("completed", 0, None)
    assert run.finished_at == bench.clock.now()
    assert not settings_dir.exists()


@pytest.mark.parametrize(
    ("exit_args", "reason"),
    [
        ({"returncode": 3}, "exit code 3"),
        ({"returncode": None, "signal": SIGKILL}, "killed by signal SIGKILL"),
        (
            {"returncode": None, "error": "lost: the supervisor vanished"},
            "lost: the supervisor vanished",
        ),
    ],
)
def test_a_failing_exit_fails_with_its_reason(
    bench: Bench, exit_args: dict[str, object], reason: str
) -> None:
    run_id = bench.trigger()
    bench.tick()
    bench.fake.exit(run_id, **exit_args)  # type: ignore[arg-type]
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.reason) == ("failed", reason)


def test_the_deadline_sends_sigterm_then_sigkill_after_the_grace(bench: Bench) -> None:
    run_id = bench.trigger("sleeper")
    bench.tick()
    bench.clock.advance(2.9)
    bench.tick()
    assert bench.fake.signals_of(run_id) == []
    bench.clock.advance(0.2)  # past the 3 s timeout
    bench.tick()
    assert bench.fake.signals_of(run_id) == [SIGTERM]
    assert bench.run(run_id).stop_reason == "timeout"
    bench.clock.advance(0.9)  # within the 1 s grace: the process may still finish
    bench.tick()
    assert bench.fake.signals_of(run_id) == [SIGTERM]
    bench.clock.advance(0.2)
    bench.tick()  # grace over: SIGKILL, the fake process dies of it
    assert bench.fake.signals_of(run_id) == [SIGTERM, SIGKILL]
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.reason, run.signal) == ("failed", "timeout", SIGKILL)


def test_an_obedient_process_ends_at_sigterm_within_its_grace(bench: Bench) -> None:
    bench.fake.ends_on = (SIGTERM, SIGKILL)
    run_id = bench.trigger("sleeper")
    bench.tick()
    bench.clock.advance(3.1)
    bench.tick()
    bench.tick()
    assert bench.fake.signals_of(run_id) == [SIGTERM]
    assert (bench.run(run_id).status, bench.run(run_id).reason) == ("failed", "timeout")


def test_a_completed_run_makes_its_follow_up_in_the_same_transaction(bench: Bench) -> None:
    run_id = bench.trigger()
    bench.tick()
    bench.fake.exit(run_id, 0)
    bench.tick()  # finishes hello: the follow-up is committed with it
    runs = bench.runs()
    assert [r.status for r in runs] == ["completed", "pending"]
    follow_up = runs[1]
    assert follow_up.cause_run_id == run_id
    assert follow_up.trigger == f"job.success:{samples.HELLO}"
    bench.tick()
    assert bench.run(follow_up.id).status == "running"
    assert bench.fake.started() == [run_id, follow_up.id]


def test_each_end_is_stamped_when_it_is_seen_not_when_the_tick_began(bench: Bench) -> None:
    """A tick that ends many runs can last seconds (minutes under a burst): every run's
    `finished_at` is the time its exit was seen, never before its own start."""
    first, second = bench.trigger(), bench.trigger("sleeper")
    bench.tick()
    bench.tick()
    for run_id in (first, second):
        bench.fake.exit(run_id, 0)
    poll = bench.fake.poll

    def slow_poll(run_dir: Path) -> object:  # each look at a run takes a minute of the tick
        bench.clock.advance(60)
        return poll(run_dir)

    bench.fake.poll = slow_poll  # type: ignore[method-assign,assignment]
    began = bench.clock.now()
    bench.tick()
    ends = sorted(bench.run(r).finished_at for r in (first, second))  # type: ignore[type-var]
    assert ends == [began + timedelta(seconds=60), began + timedelta(seconds=120)]


def test_a_failed_run_makes_no_success_follow_up(bench: Bench) -> None:
    run_id = bench.trigger()
    bench.tick()
    bench.fake.exit(run_id, 1)
    bench.tick()
    assert [r.status for r in bench.runs()] == ["failed"]


def test_cancel_of_a_running_run_stops_it_and_ends_it_cancelled(bench: Bench) -> None:
    run_id = bench.trigger("sleeper")
    bench.tick()
    assert bench.cancel(run_id) == "cancelling"
    bench.tick()
    assert bench.fake.signals_of(run_id) == [SIGTERM]
    bench.fake.exit(run_id, None, SIGTERM)
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.reason) == ("cancelled", "cancelled by request")


def test_stopping_the_runner_stops_apps_and_leaves_batch_runs_to_be_adopted(
    bench: Bench,
) -> None:
    bench.fake.ends_on = (SIGTERM, SIGKILL)  # obedient processes
    app, batch = bench.trigger("tiny_api"), bench.trigger("sleeper")
    bench.tick()
    assert {bench.run(app).status, bench.run(batch).status} == {"running"}

    assert bench.runner.stop_apps(poll_s=0.01) == [app]

    assert bench.fake.signals_of(app) == [SIGTERM]
    stopped = bench.run(app)
    assert (stopped.status, stopped.reason, stopped.stop_reason) == (
        "cancelled",
        "server stopped",
        "shutdown",
    )
    assert bench.fake.signals_of(batch) == [] and bench.run(batch).status == "running"
    bench.restart().tick()  # the batch run is adopted, the app is not started again
    assert bench.run(batch).status == "running" and bench.run(app).status == "cancelled"
    assert bench.fake.started().count(app) == 1


def test_a_pending_app_ends_at_once_when_the_runner_stops(bench: Bench) -> None:
    app = bench.trigger("tiny_api")
    assert bench.runner.stop_apps(poll_s=0.01) == [app]
    assert (bench.run(app).status, bench.run(app).reason) == ("cancelled", "server stopped")
    bench.tick()
    assert bench.fake.started() == []


def test_cancel_of_a_pending_run_ends_it_at_once_and_it_never_starts(bench: Bench) -> None:
    run_id = bench.trigger()
    assert bench.cancel(run_id) == "cancelled"
    bench.tick()
    assert bench.fake.started() == []
    assert bench.run(run_id).reason == "cancelled before it started"


def test_cancel_while_preparing_never_launches_the_run(bench: Bench) -> None:
    gate = threading.Event()
    bench.fake.build_gate = gate  # the environment build waits until the test lets it go
    run_id = bench.trigger()
    bench.runner.tick()  # claimed; preparation blocks on the build
    assert bench.run(run_id).status == "starting"
    assert bench.cancel(run_id) == "cancelling"
    gate.set()
    bench.runner.settle()
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.reason) == ("cancelled", "cancelled before it started")
    assert bench.fake.started() == []


def test_a_start_that_fails_ends_the_run_with_the_reason(bench: Bench) -> None:
    bench.fake.start_error = "docker engine unreachable at unix:///nowhere"
    run_id = bench.trigger()
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.reason) == ("failed", "docker engine unreachable at unix:///nowhere")


def test_after_a_restart_running_runs_are_adopted_not_started_again(bench: Bench) -> None:
    run_id = bench.trigger()
    bench.tick()
    bench.restart()
    bench.tick()
    assert bench.fake.started() == [run_id]
    bench.fake.exit(run_id, 0)
    bench.tick()
    assert bench.run(run_id).status == "completed"


def test_after_a_restart_an_unlaunched_claim_goes_back_to_pending_and_starts_once(
    bench: Bench,
) -> None:
    run_id = bench.trigger()
    with bench.db.session() as session:  # claimed, then the controller died preparing
        assert bench.lifecycle.claim(session, run_id, bench.clock.now())
    bench.restart()
    assert bench.run(run_id).status == "pending"
    bench.tick()
    assert bench.run(run_id).status == "running"
    assert bench.fake.started() == [run_id]


def test_after_a_restart_a_launched_but_unrecorded_run_is_recorded_running(bench: Bench) -> None:
    run_id = bench.trigger()
    with bench.db.session() as session:
        assert bench.lifecycle.claim(session, run_id, bench.clock.now())
        run = session.get(Run, run_id)
        assert run is not None
        ws, job = session.get(Workspace, run.workspace_id), session.get(Job, run.job_id)
        assert ws is not None and job is not None
    prepared = bench.preparer.prepare(ws, job, run)
    bench.fake.start(prepared.plan)  # started; the controller died before recording it
    bench.restart()
    assert bench.run(run_id).status == "running"
    bench.fake.exit(run_id, 0)
    bench.tick()
    assert bench.run(run_id).status == "completed"
    assert bench.fake.started() == [run_id]


def test_a_pending_run_past_its_bound_fails_with_the_reason(bench: Bench) -> None:
    run_id = bench.trigger()
    bench.clock.advance(bench.runner.pending_bound + 1)
    bench.runner._bound(bench.clock.now())
    run = bench.run(run_id)
    assert (run.status, run.reason) == ("failed", "stuck in pending for more than 600s")


def test_runs_beyond_the_slots_wait_their_turn_and_are_not_stuck(bench: Bench) -> None:
    """One slot: the second batch run stays pending (past the pending bound too: it waits
    in the queue, it is not stuck) until the first ends; an app takes no slot."""
    bench.runner.slots = 1
    first, second = bench.trigger(), bench.trigger("sleeper")
    bench.tick()
    assert bench.fake.started() == [first]
    assert bench.run(second).status == "pending"
    bench.clock.advance(bench.runner.pending_bound + 1)
    app = bench.trigger("tiny_api")
    bench.tick()
    assert bench.fake.started() == [first, app]  # the app started; no slot was needed
    assert bench.run(second).status == "pending"
    bench.fake.exit(first, 0)
    bench.tick()  # sees the exit: the slot is free
    bench.tick()
    assert bench.fake.started() == [first, app, second]
    assert bench.run(second).status == "running"
    bench.fake.exit(app, 0)  # the app is done too: nothing for the runner's stop to wait on


def test_a_run_waiting_where_slots_are_free_is_still_bounded(bench: Bench) -> None:
    """The queue excuses only runs this node could take: a run for a worker pool nobody
    serves still fails at the pending bound, whatever this node's slots."""
    bench.runner.slots = 1
    first = bench.trigger()
    bench.tick()
    with bench.db.session() as session:
        session.execute(runs.update_run(bench.trigger("sleeper")).values(pool="big"))
    waiting = bench.runs()[-1].id
    bench.clock.advance(bench.runner.pending_bound + 1)
    bench.tick()
    assert bench.run(first).status == "running"
    run = bench.run(waiting)
    assert (run.status, run.reason) == ("failed", "stuck in pending for more than 600s")


def test_an_illegal_move_is_an_error_not_a_silent_no_op(bench: Bench) -> None:
    run_id = bench.trigger()
    with (
        pytest.raises(IllegalMove, match="from pending to completed"),
        bench.db.session() as session,
    ):
        move(session, run_id, [RunStatus.PENDING], RunStatus.COMPLETED)
    assert bench.run(run_id).status == "pending"


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # SQLite: no row locks
@pytest.mark.timeout(60)  # without SKIP LOCKED the claim would wait on the lock forever
def test_a_pending_run_another_server_is_claiming_is_skipped_not_waited_for(
    bench: Bench,
) -> None:
    first, second = bench.trigger(), bench.trigger("sleeper")
    other = bench.db.engine.connect()  # another server's claim, holding the first row
    try:
        other.execute(select(Run.id).where(Run.id == first).with_for_update())
        bench.tick()  # would block on the locked row without SKIP LOCKED
        assert bench.run(first).status == "pending"
        assert bench.run(second).status != "pending"
    finally:
        other.rollback()
        other.close()
    bench.tick()
    assert bench.run(first).status != "pending"


def test_a_start_cut_short_by_a_database_outage_starts_again_once_it_is_back(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database went away while the run was being prepared (here: the preparation's
    query raises what psycopg raises then). The run is not failed for it: once the database
    answers, it goes back to `pending` and starts the ordinary way, once."""
    from sqlalchemy.exc import OperationalError

    real = bench.preparer.prepare
    outage = [OperationalError("SELECT", {}, Exception("server closed the connection"))]

    def prepare_during_outage(*args: object) -> object:
        if outage:
            raise outage.pop()
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench.preparer, "prepare", prepare_during_outage)
    run_id = bench.trigger()
    bench.tick()  # claimed; its preparation cut short
    assert bench.run(run_id).status == "starting"
    assert bench.fake.started() == []
    bench.tick()  # requeued, claimed again, started
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.claim_epoch) == ("running", 2)
    assert bench.fake.started() == [run_id]
