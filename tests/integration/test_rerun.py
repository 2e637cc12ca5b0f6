"""Re-runs and follow-ups' knowledge of their upstream, through the real controller (real
SQLite file, real workspace repository, the real runner and preparer) with a `FakeExecutor`
and a `FakeClock`: the interval ledger stays consistent, the follow-up's process is given
its upstream, the links go both ways, and what must be refused is. The CLI and the real
processes: `tests/e2e/test_rerun.py`."""

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dockyard.clock import FakeClock
from dockyard.controller import auth, runs, usecases, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.executors.fake import FakeExecutor
from dockyard.controller.lifecycle import Request, facts
from dockyard.controller.store.models import IntervalWindow, Run
from dockyard.errors import Conflict, DockyardError
from dockyard.settings import Settings
from tests.integration.test_runner import ADMIN, WS, deploy
from tests.unit import samples

HOURLY = "jobs.__deployment__.hourly"
ON_FAIL = "jobs.__deployment__.on_hello_fail"
START = datetime(2026, 3, 4, 10, 2, tzinfo=UTC)


def job_like(ref: str, **changes: object) -> dict[str, object]:
    job = copy.deepcopy(samples.job(samples.HELLO))
    job["job_ref"] = ref
    job["entry_point"] = {**job["entry_point"], "function": ref.rsplit(".", 1)[-1]}
    job.update(changes)
    return job


@dataclass
class Yard:
    ctl: Controller
    fake: FakeExecutor
    clock: FakeClock

    def launch(self, name: str) -> str:
        with self.ctl.db.session() as session:
            ws = workspaces.get(session, WS)
            job = runs.find_job(session, ws, name)
            request = Request(f"manual:{job.job_ref}", gated=False)
            return self.ctl.lifecycle.create(session, ws, job, request, self.clock.now()).id

    def run_to_end(self, run_id: str, returncode: int) -> Run:
        self.tick()  # claimed, prepared, started
        self.fake.exit(run_id, returncode)
        self.tick()
        return self.run(run_id)

    def tick(self) -> None:
        self.ctl.runner.tick()
        self.ctl.runner.settle()

    def run(self, run_id: str) -> Run:
        with self.ctl.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            return run

    def ledger(self) -> list[tuple[datetime, datetime, str, str]]:
        with self.ctl.db.session() as session:
            rows = session.scalars(select(IntervalWindow).order_by(IntervalWindow.start))
            return [(w.start, w.end, w.status, w.run_id) for w in rows]

    def completed_up_to(self) -> datetime | None:
        with self.ctl.db.session() as session:
            ws = workspaces.get(session, WS)
            return facts.completed_end(session, runs.find_job(session, ws, "hourly"))


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    settings = Settings(
        data_dir=tmp_path / "data", db_url=database_url, start_loops=False, admin_token="t" * 32
    )
    clock, fake = FakeClock(START), FakeExecutor()
    ctl = Controller(settings, clock=clock, executor=fake)
    ctl.bootstrap()
    usecases.workspaces.create_workspace(ctl, ADMIN, WS)
    hourly = job_like(
        HOURLY,
        triggers=["schedule:0 * * * *"],
        default_trigger="schedule:0 * * * *",
        interval={"start": "2026-03-04T08:00:00+00:00"},
    )
    on_fail = job_like(ON_FAIL, triggers=[f"job.fail:{samples.HELLO}"], default_trigger=None)
    deploy(ctl, samples.job(samples.HELLO), hourly, on_fail)
    yield Yard(ctl, fake, clock)
    ctl.runner.on_stop()
    ctl.db.dispose()


def test_a_rerun_of_a_completed_window_runs_it_again_and_the_ledger_is_unchanged(
    yard: Yard,
) -> None:
    first = yard.run_to_end(yard.launch("hourly"), 0)
    window = (first.interval_start, first.interval_end)
    assert window == (datetime(2026, 3, 4, 8, tzinfo=UTC), datetime(2026, 3, 4, 10, tzinfo=UTC))
    before = yard.ledger()
    assert before == [(*window, "completed", first.id)]

    again = usecases.runs.rerun(yard.ctl, ADMIN, first.id)

    assert again["status"] == "pending" and again["rerun_of"] == first.id
    assert (again["interval_start"], again["interval_end"]) == (
        first.interval_start.isoformat(),  # type: ignore[union-attr]
        first.interval_end.isoformat(),  # type: ignore[union-attr]
    )
    assert again["trigger"] == first.trigger and again["number"] == first.number + 1
    assert yard.run_to_end(again["run_id"], 0).status == "completed"
    assert yard.ledger() == before  # the covered time is not covered twice
    assert yard.completed_up_to() == window[1]
    # dlt's launcher gets the same window
    entry = yard.run(again["run_id"]).entry_point
    assert entry is not None and entry["interval_start"] == again["interval_start"]


def test_a_rerun_of_a_failed_window_covers_it_in_the_ledger(yard: Yard) -> None:
    yard.run_to_end(yard.launch("hourly"), 0)  # [08:00, 10:00) done
    yard.clock.advance(timedelta(hours=1).total_seconds())
    failed = yard.run_to_end(yard.launch("hourly"), 1)  # [10:00, 11:00) failed: not covered
    assert failed.status == "failed" and yard.completed_up_to() == failed.interval_start

    again = usecases.runs.rerun(yard.ctl, ADMIN, failed.id)
    assert [w[2:] for w in yard.ledger()][-1] == ("running", again["run_id"])
    yard.run_to_end(again["run_id"], 0)

    assert yard.completed_up_to() == failed.interval_end
    assert yard.ledger()[-1] == (
        failed.interval_start,
        failed.interval_end,
        "completed",
        again["run_id"],
    )
    # nothing is left for an ordinary run to cover until the next tick
    skipped = yard.run(yard.launch("hourly"))
    assert skipped.status == "skipped" and "nothing new to cover" in (skipped.reason or "")


def test_a_fail_follow_up_is_told_its_upstream_and_the_links_go_both_ways(yard: Yard) -> None:
    upstream = yard.run_to_end(yard.launch("hello"), 3)
    with yard.ctl.db.session() as session:
        follow_up = session.scalars(select(Run).where(Run.cause_run_id == upstream.id)).one()
        follow_up_id = follow_up.id
    yard.tick()
    plan = yard.fake.runs[follow_up_id].plan
    base = yard.ctl.settings.base_url
    expected = {
        "DOCKYARD_UPSTREAM_WORKSPACE": WS,
        "DOCKYARD_UPSTREAM_JOB": samples.HELLO,
        "DOCKYARD_UPSTREAM_RUN_NUMBER": str(upstream.number),
        "DOCKYARD_UPSTREAM_RUN_ID": upstream.id,
        "DOCKYARD_UPSTREAM_STATUS": "failed",
        "DOCKYARD_UPSTREAM_REASON": upstream.reason,
        "DOCKYARD_UPSTREAM_URL": f"{base}/ui/w/{WS}/runs/{upstream.id}",
    }
    assert {k: v for k, v in plan.environment.items() if "UPSTREAM" in k} == expected
    entry = yard.run(follow_up_id).entry_point
    assert entry is not None and entry["run_args"]["upstream_reason"] == upstream.reason
    assert entry["run_args"]["upstream_run_number"] == upstream.number
    # an ordinary run is told nothing of the kind
    assert not any("UPSTREAM" in k for k in yard.fake.runs[upstream.id].plan.environment)

    up = usecases.runs.run_by_id(yard.ctl, ADMIN, upstream.id)["links"]
    down = usecases.runs.run_by_id(yard.ctl, ADMIN, follow_up_id)["links"]
    assert [r["run_id"] for r in up["follow_ups"]] == [follow_up_id]
    assert down["cause"]["run_id"] == upstream.id and down["cause"]["job_ref"] == samples.HELLO

    # a re-run of the follow-up is told about the same upstream, and linked to its original
    yard.fake.exit(follow_up_id, 0)
    yard.tick()
    again = usecases.runs.rerun(yard.ctl, ADMIN, follow_up_id)
    yard.tick()
    env = yard.fake.runs[again["run_id"]].plan.environment
    assert env["DOCKYARD_UPSTREAM_RUN_ID"] == upstream.id
    original = usecases.runs.run_by_id(yard.ctl, ADMIN, follow_up_id)["links"]
    assert [r["number"] for r in original["reruns"]] == [again["number"]]
    rerun_links = usecases.runs.run_by_id(yard.ctl, ADMIN, again["run_id"])["links"]
    assert rerun_links["rerun_of"]["run_id"] == follow_up_id


def test_a_rerun_is_refused_for_an_active_run_and_without_the_right(yard: Yard) -> None:
    active = yard.launch("hello")
    with pytest.raises(Conflict, match=r"is still pending; cancel it first"):
        usecases.runs.rerun(yard.ctl, ADMIN, active)
    yard.run_to_end(active, 0)
    reader = auth.Principal(9, "read", None)
    with pytest.raises(DockyardError, match="needs 'deploy'"):
        usecases.runs.rerun(yard.ctl, reader, active)
    elsewhere = auth.Principal(9, "deploy", 999)
    with pytest.raises(DockyardError, match="limited to another workspace"):
        usecases.runs.rerun(yard.ctl, elsewhere, active)
    # the run is fine once finished, for a deploy token of its workspace
    made = usecases.runs.rerun(yard.ctl, ADMIN, active)
    assert made["status"] == "pending" and made["rerun_of"] == active


def test_a_rerun_of_an_archived_jobs_run_is_refused(yard: Yard) -> None:
    done = yard.run_to_end(yard.launch("hourly"), 0)
    deploy(yard.ctl, samples.job(samples.HELLO))  # hourly archived
    with pytest.raises(Conflict, match=f"job {HOURLY} is archived; deploy it again"):
        usecases.runs.rerun(yard.ctl, ADMIN, done.id)
