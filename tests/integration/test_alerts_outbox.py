"""The alert outbox on the runner's real path (a `FakeExecutor`, a `FakeClock`, a real
SQLite file): which ends make which alert rows, in the transaction of the end; and the
sending loop's retries on the fake clock against a real loopback HTTP receiver."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from dockyard.controller import keys
from dockyard.controller.alerts import delivery
from dockyard.controller.store.models import AlertChannel, AlertDelivery, Run
from dockyard.shim import rundir
from tests.alerting import http_receiver
from tests.integration import test_runner
from tests.integration.test_runner import Bench

# the runner's tests' fixtures: a deployed data dir made once, a fresh copy per test
deployed = test_runner.deployed
bench = test_runner.bench


def add_channel(bench: Bench, name: str = "ops", events: list[str] | None = None) -> int:
    with bench.db.session() as session:
        row = AlertChannel(
            workspace_id=1,
            name=name,
            kind="webhook",
            events=events or ["failed", "timeout", "lost", "recovered"],
            config={"url": "http://127.0.0.1:9/never"},
            sealed_secret=None,
            secret_hint=None,
            created_at=bench.clock.now(),
        )
        session.add(row)
        session.flush()
        return row.id


def alerts(bench: Bench, run_id: str) -> list[tuple[str, str]]:
    with bench.db.session() as session:
        rows = session.scalars(select(AlertDelivery).where(AlertDelivery.run_id == run_id))
        return sorted((r.channel_name, r.event) for r in rows)


def ended(bench: Bench, job: str = "hello", **exit_args: object) -> str:
    run_id = bench.trigger(job)
    bench.tick()
    bench.fake.exit(run_id, **exit_args)  # type: ignore[arg-type]
    bench.tick()
    return run_id


def test_no_channel_no_row(bench: Bench) -> None:
    run_id = ended(bench, returncode=1)
    assert bench.run(run_id).status == "failed"
    assert alerts(bench, run_id) == []


def test_each_end_makes_its_alert(bench: Bench) -> None:
    add_channel(bench)
    add_channel(bench, "only-lost", ["lost"])
    assert alerts(bench, ended(bench, returncode=1)) == [("ops", "failed")]
    assert alerts(bench, ended(bench, returncode=None, error="out of memory")) == [
        ("ops", "failed")
    ]
    lost = ended(bench, returncode=None, error="lost: the run's supervisor ended without a status")
    assert alerts(bench, lost) == [("only-lost", "lost"), ("ops", "lost")]
    assert bench.run(lost).reason == "lost: the run's supervisor ended without a status"


def test_a_garbled_exit_record_is_lost(bench: Bench) -> None:
    add_channel(bench)
    run_id = bench.trigger()
    bench.tick()
    run_dir = bench.preparer.run_dir(run_id)
    (run_dir / rundir.EXIT).write_text("{not json")
    garbled = rundir.read_exit(run_dir)
    assert garbled is not None
    bench.fake.exit(run_id, garbled.returncode, garbled.signal, garbled.error)
    bench.tick()
    assert alerts(bench, run_id) == [("ops", "lost")]


def test_a_run_stuck_past_its_bound_is_lost(bench: Bench) -> None:
    add_channel(bench)
    run_id = bench.trigger()
    bench.clock.advance(bench.runner.pending_bound + 1)
    bench.runner._bound(bench.clock.now())
    assert alerts(bench, run_id) == [("ops", "lost")]


def test_a_timeout_is_its_own_event(bench: Bench) -> None:
    add_channel(bench)
    add_channel(bench, "failures-only", ["failed"])
    run_id = bench.trigger("sleeper")
    bench.tick()
    bench.clock.advance(3.1)
    bench.tick()  # SIGTERM
    bench.clock.advance(1.1)
    bench.tick()  # SIGKILL: the fake process dies of it
    bench.tick()
    assert (bench.run(run_id).status, bench.run(run_id).reason) == ("failed", "timeout")
    assert alerts(bench, run_id) == [("ops", "timeout")]


def test_recovered_once_after_a_failure_and_never_for_a_plain_success(bench: Bench) -> None:
    add_channel(bench)
    assert alerts(bench, ended(bench, returncode=0)) == []
    ended(bench, returncode=1)
    cancelled = bench.trigger()
    bench.cancel(cancelled)  # a cancel says nothing about the job's health
    assert alerts(bench, cancelled) == []
    assert alerts(bench, ended(bench, returncode=0)) == [("ops", "recovered")]
    assert alerts(bench, ended(bench, returncode=0)) == []


def test_the_loop_retries_on_its_backoff_and_records_every_attempt(
    bench: Bench, tmp_path: Path
) -> None:
    keyring = keys.Keyring(keys.load_master(tmp_path), tmp_path)
    with http_receiver() as receiver:
        receiver.script["/hook"] = [500, 503]
        add_channel(bench)
        with bench.db.session() as session:
            channel = session.scalars(select(AlertChannel)).one()
            channel.config = {"url": f"{receiver.url}/hook"}
            channel.sealed_secret = keyring.seal(b"s" * 32)
        run_id = ended(bench, returncode=1)
        policy = delivery.Policy((30.0, 120.0), 3, 5.0, "https://dockyard.example")
        sender = delivery.Sender(bench.db, bench.clock, keyring, policy)

        record = sender_step(sender, bench)
        assert (record.status, record.attempts, len(receiver.at("/hook"))) == ("pending", 1, 1)
        assert record.last_error == "HTTP 500: receiver says no"
        assert record.next_attempt_at == bench.clock.now() + timedelta(seconds=30)
        bench.clock.advance(29)
        assert sender_step(sender, bench).attempts == 1  # not due yet: nothing sent
        bench.clock.advance(1)
        record = sender_step(sender, bench)
        assert (record.attempts, record.last_error) == (2, "HTTP 503: receiver says no")
        assert record.next_attempt_at == bench.clock.now() + timedelta(seconds=120)
        bench.clock.advance(120)
        record = sender_step(sender, bench)
        assert (record.status, record.attempts, record.sent_at) == ("sent", 3, bench.clock.now())
        assert len(receiver.at("/hook")) == 3
        body = receiver.at("/hook")[-1].json()
        assert body["url"] == f"https://dockyard.example/ui/w/yard/runs/{run_id}"


def test_the_last_attempt_fails_the_delivery(bench: Bench, tmp_path: Path) -> None:
    keyring = keys.Keyring(keys.load_master(tmp_path), tmp_path)
    with http_receiver() as receiver:
        receiver.script["/hook"] = [500, 500]
        add_channel(bench)
        with bench.db.session() as session:
            session.scalars(select(AlertChannel)).one().config = {"url": f"{receiver.url}/hook"}
        ended(bench, returncode=1)
        sender = delivery.Sender(
            bench.db, bench.clock, keyring, delivery.Policy((1.0,), 2, 5.0, "")
        )
        sender_step(sender, bench)
        bench.clock.advance(1)
        record = sender_step(sender, bench)
        assert (record.status, record.attempts, record.next_attempt_at) == ("failed", 2, None)
        bench.clock.advance(3600)
        assert sender_step(sender, bench).attempts == 2  # given up: never sent again


def sender_step(sender: delivery.Sender, bench: Bench) -> AlertDelivery:
    sender.step()
    with bench.db.session() as session:
        return session.scalars(select(AlertDelivery)).one()


def test_run_rows_are_untouched_by_a_channel_added_later(bench: Bench) -> None:
    run_id = ended(bench, returncode=1)
    add_channel(bench)
    with bench.db.session() as session:
        assert session.get(Run, run_id) is not None
    assert alerts(bench, run_id) == []  # an alert is decided when the run ends, not later
