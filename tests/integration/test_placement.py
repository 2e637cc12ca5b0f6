"""Placement against a real controller and database (SQLite and PostgreSQL), workers through
the real worker API in-process: a run placed in pool `big` is claimed neither by the embedded
runner nor by a default-pool worker, only by a `big` worker with the labels it needs; a run
nobody live can take ends `failed` with the reason, once."""

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dockyard.controller import auth, gitstore, logs, manifests, unplaced, usecases
from dockyard.web.asgi import create_asgi
from tests.integration.deployed import ADMIN, WS, Yard, make_yard
from tests.unit import samples

RULES = """
[instance.size]
large = { pool = "big" }
huge = { pool = "nobody" }
[region]
eu-west-1 = { labels = { region = "eu" } }
us-east-1 = { pool = "us" }
"""
JOBS = {
    "hello": {},
    "large": {"instance": {"size": "large"}},
    "large_eu": {"instance": {"size": "large"}, "region": "eu-west-1"},
    "huge": {"instance": {"size": "huge"}},
    "two_pools": {"instance": {"size": "large"}, "region": "us-east-1"},
    "unmapped": {"provider": "gcp"},
    "eu_only": {"region": "eu-west-1"},
}


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    rules = tmp_path / "placement.toml"
    rules.write_text(RULES)
    yield from make_yard(tmp_path / "data", db_url=database_url, placement=str(rules))


@pytest.fixture
def app(yard: Yard) -> TestClient:
    return TestClient(create_asgi(yard.ctl.settings, yard.ctl))


@pytest.fixture
def token(yard: Yard) -> str:
    with yard.ctl.db.session() as session:
        clear, _ = auth.create(session, "hosts", "worker", None)
    return clear


def deploy(yard: Yard) -> None:
    jobs = []
    for name, require in JOBS.items():
        job = copy.deepcopy(samples.job(samples.HELLO))
        job["job_ref"] = f"jobs.__deployment__.{name}"
        job["entry_point"]["function"] = name
        if require:
            job["require"] = require
        jobs.append(job)
    manifest = {**samples.manifest(), "jobs": jobs}
    yard.committer.commit(
        {
            gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
            gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
            "code/__deployment__.py": b"x = 1\n",
        }
    )
    yard.ctl.reconciler.reconcile(WS)


def trigger(yard: Yard, name: str) -> str:
    made = usecases.runs.trigger(yard.ctl, ADMIN, WS, [name])["triggered"][0]
    return str(made["run_id"])


class Worker:
    def __init__(self, app: TestClient, token: str, name: str, pool: str, **labels: str):
        self.app, self.name = app, name
        self.headers = {"Authorization": f"Bearer {token}"}
        body = {"name": name, "pool": pool, "labels": labels, "slots": 4, "host": "h", "pid": 1}
        answer = app.post("/api/v1/worker/register", json=body, headers=self.headers)
        assert answer.status_code == 200, answer.text
        self.incarnation = int(answer.json()["incarnation"])

    def claim(self) -> list[str]:
        body = {"name": self.name, "incarnation": self.incarnation, "free_slots": 4, "wait_s": 0}
        answer = self.app.post("/api/v1/worker/claim", json=body, headers=self.headers)
        assert answer.status_code == 200, answer.text
        return [given["run_id"] for given in answer.json()]

    def beat(self) -> None:
        body = {"name": self.name, "incarnation": self.incarnation, "running": []}
        answer = self.app.post("/api/v1/worker/heartbeat", json=body, headers=self.headers)
        assert answer.status_code == 200, answer.text


def test_runs_record_their_placement_and_two_pools_fail_at_once(yard: Yard) -> None:
    deploy(yard)
    placed = {name: yard.run(trigger(yard, name)) for name in JOBS}
    where = {name: (run.pool, run.labels) for name, run in placed.items()}
    assert where == {
        "hello": ("default", {}),
        "large": ("big", {}),
        "large_eu": ("big", {"region": "eu"}),
        "huge": ("nobody", {}),
        "two_pools": ("default", {}),
        "unmapped": ("default", {}),
        "eu_only": ("default", {"region": "eu"}),
    }
    two = placed["two_pools"]
    assert two.status == "failed"
    assert two.reason == (
        "no worker can take it: its requirements map to two pools: 'big' (instance.size=large)"
        " and 'us' (region=us-east-1); change the job's require or the placement file"
    )
    assert {run.status for name, run in placed.items() if name != "two_pools"} == {"pending"}


def test_only_a_worker_of_the_pool_with_the_labels_claims(
    yard: Yard, app: TestClient, token: str
) -> None:
    deploy(yard)
    large, large_eu, eu_only = (trigger(yard, n) for n in ("large", "large_eu", "eu_only"))
    yard.ctl.runner._claim(yard.clock.now())  # the embedded runner: default pool, no labels
    assert {yard.run(r).status for r in (large, large_eu, eu_only)} == {"pending"}
    assert Worker(app, token, "plain", "default").claim() == []  # eu_only needs region=eu
    assert Worker(app, token, "plain-eu", "default", region="eu").claim() == [eu_only]
    big_us = Worker(app, token, "big-us", "big", region="us")
    assert big_us.claim() == [large]  # no labels needed: any big worker
    assert yard.run(large).holder == "big-us"
    assert Worker(app, token, "big-eu", "big", region="eu", disk="ssd").claim() == [large_eu]
    assert yard.run(large_eu).holder == "big-eu"


def test_a_run_nobody_can_take_ends_failed_once_with_the_reason(
    yard: Yard, app: TestClient, token: str
) -> None:
    deploy(yard)
    huge, large_eu, large = (trigger(yard, n) for n in ("huge", "large_eu", "large"))
    workers = [Worker(app, token, "w1", "default"), Worker(app, token, "w2", "big", region="us")]

    def judge() -> list[str]:
        for worker in workers:
            worker.beat()  # alive at the judged moment
        return unplaced.end_unplaceable(
            yard.ctl.db, yard.ctl.lifecycle, yard.clock.now(), 60.0, yard.ctl.preparer.run_dir
        )

    assert judge() == []  # not waiting long enough yet
    hint = usecases.runs.run_by_id(yard.ctl, ADMIN, large_eu)["waiting"]
    assert hint == (
        "no live worker can take it yet: it needs pool 'big' with labels region=eu; live"
        " workers: w1 (pool default), w2 (pool big, region=us)"
    )
    assert usecases.runs.run_by_id(yard.ctl, ADMIN, large)["waiting"] is None
    yard.clock.advance(61)
    assert sorted(judge()) == sorted([huge, large_eu])  # `large`: w2 may take it
    assert judge() == []  # once
    reason = yard.run(large_eu).reason
    assert reason == (
        "no worker can take it: it needs pool 'big' with labels region=eu; live workers:"
        " w1 (pool default), w2 (pool big, region=us)"
    )
    assert yard.run(huge).status == "failed" and yard.run(large).status == "pending"
    assert f"run failed: {reason}" in logs.path(yard.ctl.preparer.run_dir(large_eu)).read_text()


def test_a_controller_taking_batch_runs_serves_the_default_pool_unlabelled(yard: Yard) -> None:
    """The embedded runner counts as a live taker of default, unlabelled runs only."""
    deploy(yard)
    hello, large = trigger(yard, "hello"), trigger(yard, "large")
    yard.ctl.join()  # this controller as a node: pool default (embedded runs on)
    yard.clock.advance(61)
    yard.ctl.membership.beat()
    ended = unplaced.end_unplaceable(
        yard.ctl.db, yard.ctl.lifecycle, yard.clock.now(), 60.0, yard.ctl.preparer.run_dir
    )
    assert ended == [large] and yard.run(hello).status == "pending"
    node = yard.ctl.settings.node_name
    assert yard.run(large).reason == (
        f"no worker can take it: it needs pool 'big'; live workers: {node} (controller, pool"
        " default)"
    )


def test_a_requirement_without_a_rule_runs_anywhere_and_its_log_says_so_once(
    yard: Yard, app: TestClient, token: str
) -> None:
    deploy(yard)
    run_id = trigger(yard, "unmapped")
    assert Worker(app, token, "w1", "default").claim() == [run_id]
    text = logs.path(yard.ctl.preparer.run_dir(run_id)).read_text()
    assert text.count("placement: no rule for provider=gcp in the placement file") == 1
