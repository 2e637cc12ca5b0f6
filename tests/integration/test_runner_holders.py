"""The runner as one node among several (`FakeExecutor`, `FakeClock`, the runner tests'
deployed data dir): it claims as its node, never touches a run another node holds, and a run
given up on as lost stays as the sweep ended it whatever its old holder sees afterwards."""

from dockyard.controller import nodes, runtime_config
from dockyard.controller.lifecycle import Lifecycle
from dockyard.controller.store.models import Node
from tests.integration import test_runner
from tests.integration.test_runner import SIGKILL, Bench

# the runner's tests' fixtures: a deployed data dir made once, a fresh copy per test
deployed = test_runner.deployed
bench = test_runner.bench


def test_the_runner_claims_as_its_node_and_leaves_other_holders_runs_alone(bench: Bench) -> None:
    mine = bench.trigger()
    theirs = bench.trigger("after_hello")
    with bench.db.session() as session:  # another node claimed this one first
        assert bench.lifecycle.claim(session, theirs, bench.clock.now(), "other")
    bench.tick()
    assert bench.fake.started() == [mine]
    run = bench.run(mine)
    assert (run.status, run.holder, run.claim_epoch) == ("running", bench.runner.node, 1)
    other = bench.run(theirs)
    assert (other.status, other.holder) == ("starting", "other")  # neither started nor bounded
    bench.clock.advance(3600)  # past the starting bound: still not this runner's to fail
    bench.tick()
    assert bench.run(theirs).status == "starting"


def test_a_run_given_up_on_stays_failed_when_its_old_holder_sees_it_exit(bench: Bench) -> None:
    run_id = bench.trigger()
    bench.tick()
    assert bench.run(run_id).status == "running"
    last = bench.clock.now()
    with bench.db.session() as session:  # this runner's node stopped heartbeating
        session.add(
            Node(
                name=bench.runner.node,
                kind="controller",
                labels={},
                host="h",
                pid=1,
                incarnation=1,
                state=nodes.UP,
                started_at=last,
                last_heartbeat_at=last,
            )
        )
    bench.clock.advance(16)
    other = Lifecycle(
        bench.preparer.settings.repos_dir, runtime_config.Defaults(7200.0, 30.0), node="b"
    )
    ended = nodes.end_orphans(bench.db, other, "b", bench.clock.now(), bench.preparer.run_dir)
    assert ended == [run_id]
    reason = bench.run(run_id).reason
    assert (
        reason == f"controller {bench.runner.node} lost (last heartbeat {nodes.clock_time(last)})"
    )
    bench.tick()  # the old holder comes back: the process of a run it no longer holds dies
    assert bench.fake.signals_of(run_id) == [SIGKILL]
    bench.tick()
    assert bench.fake.signals_of(run_id) == [SIGKILL]  # once
    bench.fake.exit(run_id, None, SIGKILL)
    bench.tick()
    run = bench.run(run_id)
    assert (run.status, run.reason, run.exit_code) == ("failed", reason, None)  # the sweep's end


def test_with_embedded_runs_off_the_runner_leaves_batch_runs_to_workers(bench: Bench) -> None:
    """`DOCKYARD_EMBEDDED_RUNS=off`: batch runs wait for a worker; apps still run here."""
    bench.runner.batch_runs = False
    batch, app = bench.trigger("hello"), bench.trigger("tiny_api")
    bench.tick()
    assert bench.fake.started() == [app]
    run = bench.run(batch)
    assert (run.status, run.holder) == ("pending", None)
    bench.runner.batch_runs = True  # on again: the runner takes it
    bench.tick()
    assert bench.run(batch).holder == bench.runner.node
