"""Holders and claim epochs on a real database (the `db` fixture): a claim sets both in one
guarded write, a holder given up on finds its writes refused, a lost node's runs end once even
when two controllers sweep together, and a node name is held by one live process."""

import os
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dockyard.clock import FakeClock, utcnow
from dockyard.controller import logs, nodes, runtime_config
from dockyard.controller.lifecycle import Claim, Lifecycle, RunStatus
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import AlertChannel, AlertDelivery, Job, Node, Run, Workspace
from dockyard.errors import Conflict

S = RunStatus


def lifecycle(tmp_path: Path, node: str) -> Lifecycle:
    return Lifecycle(tmp_path / "repos", runtime_config.Defaults(7200.0, 30.0), node=node)


def add_run(db: Database, clock: FakeClock, number: int = 1) -> str:
    """A pending run of a one-job workspace, as the lifecycle would have made it."""
    now = clock.now()
    with db.session() as session:
        ws = session.scalar(select(Workspace).where(Workspace.name == "yard"))
        if ws is None:
            ws = Workspace(name="yard", created_at=now, deployment_version="d" * 40)
            session.add(ws)
            session.flush()
            job = Job(
                workspace_id=ws.id,
                job_ref="jobs.slow",
                job_type="batch",
                status="active",
                definition={"triggers": []},
                fingerprint="f",
                created_sha="d" * 40,
                updated_sha="d" * 40,
                created_at=now,
                updated_at=now,
            )
            session.add(job)
            session.add(
                AlertChannel(
                    workspace_id=ws.id,
                    name="ops",
                    kind="webhook",
                    events=["failed", "lost"],
                    config={"url": "http://127.0.0.1:9/never"},
                    created_at=now,
                )
            )
            session.flush()
        job_id = session.scalar(select(Job.id).where(Job.workspace_id == ws.id))
        run = Run(
            id=f"run-{number}",
            workspace_id=ws.id,
            job_id=job_id,
            number=number,
            trigger="manual:jobs.slow",
            status=S.PENDING.value,
            created_at=now,
            timeout_s=60.0,
            grace_s=1.0,
        )
        session.add(run)
        return run.id


def get(db: Database, run_id: str) -> Run:
    with db.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def claim(db: Database, lc: Lifecycle, run_id: str, clock: FakeClock) -> Claim | None:
    with db.session() as session:
        return lc.claim(session, run_id, clock.now())


def running(db: Database, lc: Lifecycle, run_id: str, clock: FakeClock, c: Claim | None) -> bool:
    with db.session() as session:
        return lc.mark_running(session, get(db, run_id), clock.now(), c)


def test_a_claim_sets_the_holder_and_counts_the_claim_in_one_guarded_write(
    db: Database, tmp_path: Path
) -> None:
    clock = FakeClock(utcnow())
    a, b = lifecycle(tmp_path, "a"), lifecycle(tmp_path, "b")
    run_id = add_run(db, clock)
    assert claim(db, a, run_id, clock) == Claim("a", 1)
    assert claim(db, b, run_id, clock) is None  # one claim only
    run = get(db, run_id)
    assert (run.status, run.holder, run.claim_epoch) == ("starting", "a", 1)


def test_a_holder_given_up_on_cannot_start_or_finish_the_run(db: Database, tmp_path: Path) -> None:
    clock = FakeClock(utcnow())
    a, b = lifecycle(tmp_path, "a"), lifecycle(tmp_path, "b")
    run_id = add_run(db, clock)
    first = claim(db, a, run_id, clock)
    with db.session() as session:  # given back (its preparation was cut short)
        assert a.requeue(session, run_id, first)
    assert get(db, run_id).holder is None
    second = claim(db, b, run_id, clock)
    assert second == Claim("b", 2)
    # a comes back with its old claim: every write of its is refused, nothing changes
    assert not running(db, a, run_id, clock, first)
    with db.session() as session:
        assert (
            a.end(session, get(db, run_id), ["starting"], "failed", clock.now(), claim=first)
            is None
        )
        assert not a.requeue(session, run_id, first)
    run = get(db, run_id)
    assert (run.status, run.holder, run.claim_epoch) == ("starting", "b", 2)
    assert running(db, b, run_id, clock, second)
    with db.session() as session:
        ended = b.end(session, get(db, run_id), ["running"], "completed", clock.now(), claim=second)
    assert ended == []
    assert get(db, run_id).status == "completed"


def node_row(db: Database, name: str, heartbeat_age_s: float, clock: FakeClock) -> None:
    last = clock.now() - timedelta(seconds=heartbeat_age_s)
    with db.session() as session:
        session.add(
            Node(
                name=name,
                kind="controller",
                labels={},
                host="elsewhere",
                pid=1,
                incarnation=1,
                state=nodes.UP,
                started_at=last,
                last_heartbeat_at=last,
            )
        )


def test_a_lost_nodes_runs_end_once_when_two_controllers_sweep_together(
    db: Database, tmp_path: Path
) -> None:
    clock = FakeClock(utcnow())
    a, b, c = (lifecycle(tmp_path, n) for n in "abc")
    held = [add_run(db, clock, n) for n in (1, 2)]
    others = add_run(db, clock, 3)
    for run_id in held:
        claim(db, a, run_id, clock)
    running(db, a, held[0], clock, Claim("a", 1))  # one running, one still starting
    claim(db, b, others, clock)
    node_row(db, "a", 16.0, clock)
    node_row(db, "b", 1.0, clock)
    node_row(db, "c", 1.0, clock)
    run_dir = tmp_path.joinpath
    results: list[list[str]] = []
    barrier = threading.Barrier(2)

    def sweep(lc: Lifecycle, me: str) -> None:
        barrier.wait()
        results.append(nodes.end_orphans(db, lc, me, clock.now(), run_dir))

    threads = [threading.Thread(target=sweep, args=(lc, n)) for lc, n in ((b, "b"), (c, "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r for found in results for r in found) == sorted(held)  # each once
    last = (clock.now() - timedelta(seconds=16)).strftime("%H:%M:%S UTC")
    for run_id in held:
        run = get(db, run_id)
        assert (run.status, run.reason) == ("failed", f"controller a lost (last heartbeat {last})")
        text = logs.path(run_dir(run_id)).read_text()
        assert text.count("run failed: controller a lost") == 1, text
    assert get(db, others).status == "starting"  # b is alive: its run is untouched
    with db.session() as session:  # one alert each, marked lost
        events = list(session.scalars(select(AlertDelivery.event).order_by(AlertDelivery.run_id)))
    assert events == ["lost", "lost"]
    # a comes back: its writes find the runs given up on
    assert not running(db, a, held[1], clock, Claim("a", 1))
    assert nodes.end_orphans(db, b, "b", clock.now(), run_dir) == []


def test_a_node_name_is_held_by_one_live_process(db: Database) -> None:
    clock = FakeClock(utcnow())
    gone = subprocess.Popen(["true"])  # a process number that surely is no process now
    gone.wait()
    first = nodes.Membership(db, clock, nodes.Identity("ctl", host="h1", pid=gone.pid))
    assert first.join() is None
    clock.advance(2)

    def meanwhile(_seconds: float) -> None:  # the first keeps heartbeating while we watch
        clock.advance(5)
        assert first.beat()

    second = nodes.Membership(db, clock, nodes.Identity("ctl", host="h2", pid=20), meanwhile)
    with pytest.raises(Conflict, match=r"heartbeat is fresh.*DOCKYARD_NODE_NAME"):
        second.join()
    # the first dies; a restart on its host takes the name over without waiting
    restarted = nodes.Membership(
        db,
        clock,
        nodes.Identity("ctl", host="h1", pid=os.getpid()),
        lambda _s: pytest.fail("waited"),
    )
    assert restarted.join() is not None
    assert restarted.incarnation == 2
    assert not first.beat() and first.fenced  # the old incarnation holds nothing more
    assert restarted.beat()


def test_a_restarted_node_adopts_its_runs_and_those_nobody_holds(
    db: Database, tmp_path: Path
) -> None:
    clock = FakeClock(utcnow())
    a, b = lifecycle(tmp_path, "a"), lifecycle(tmp_path, "b")
    mine, unheld, theirs = (add_run(db, clock, n) for n in (1, 2, 3))
    claim(db, a, mine, clock)
    claim(db, b, theirs, clock)
    with db.session() as session:  # a run from before holders existed
        session.get(Run, unheld).status = "running"  # type: ignore[union-attr]
    with db.session() as session:
        adopted = a.adopt(session)
    assert adopted == {mine: Claim("a", 2), unheld: Claim("a", 1)}
    assert get(db, theirs).holder == "b"
    assert not running(db, a, mine, clock, Claim("a", 1))  # the old incarnation's claim


def beat_node(db: Database, name: str, clock: FakeClock) -> None:
    with db.session() as session:
        session.execute(update(Node).where(Node.name == name).values(last_heartbeat_at=clock.now()))


def test_after_an_outage_nobody_is_lost_until_the_observer_heartbeated_for_lost_after(
    db: Database, tmp_path: Path
) -> None:
    """Every node's heartbeat is old when the database comes back: the first controller back
    must not fail the others' runs. It judges once it has itself heartbeated for LOST_AFTER,
    and then only the nodes that did not heartbeat in that window."""
    clock = FakeClock(utcnow())
    lc_b, lc_c = lifecycle(tmp_path, "b"), lifecycle(tmp_path, "c")
    back, gone = add_run(db, clock, 1), add_run(db, clock, 2)
    for run_id, lc, node in ((back, lc_b, "b"), (gone, lc_c, "c")):
        running(db, lc, run_id, clock, claim(db, lc, run_id, clock))
        node_row(db, node, 0.0, clock)
    me = nodes.Membership(db, clock, nodes.Identity("a", host="here", pid=os.getpid()))
    me.join()
    heartbeat = nodes.Heartbeat(me, lifecycle(tmp_path, "a"), tmp_path.joinpath)
    for _ in range(4):  # a, b and c heartbeat for 15 s: all well
        heartbeat.step()
        beat_node(db, "b", clock)
        beat_node(db, "c", clock)
        clock.advance(5)
    clock.advance(20)  # the database away for 20 s: nobody heartbeated
    statuses = []
    for _ in range(3):  # a is back first; b comes back 1 s later, c never
        heartbeat.step()
        clock.advance(1)
        beat_node(db, "b", clock)
        statuses.append((get(db, back).status, get(db, gone).status))
        clock.advance(4)
    assert statuses == [("running", "running")] * 3  # a has not heartbeated for 15 s yet
    heartbeat.step()  # now it has, and c has not heartbeated in that window
    assert (get(db, back).status, get(db, gone).status) == ("running", "failed")
    assert str(get(db, gone).reason).startswith("controller c lost")


def test_heartbeats_go_by_the_database_clock_on_postgresql(db: Database) -> None:
    """A host whose clock is an hour off still writes a fresh heartbeat on PostgreSQL (the
    database's clock); on SQLite (one box) the injected clock is the clock."""
    skewed = FakeClock(utcnow() - timedelta(hours=1))
    me = nodes.Membership(
        db, skewed, nodes.Identity("skewed", host="h", pid=os.getpid()), db_clock=db.is_postgres
    )
    me.join()
    assert me.beat()
    with db.session() as session:
        written = session.scalar(select(Node.last_heartbeat_at).where(Node.name == "skewed"))
        listed = {v.name: v.state for v in nodes.listing(session, me.now(session))}
    assert written is not None
    if db.is_postgres:
        assert abs(written - utcnow()) < timedelta(minutes=10)  # not an hour behind
    else:
        assert written == skewed.now()
    assert listed == {"skewed": "alive"}
