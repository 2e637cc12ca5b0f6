"""The worker API (`/api/v1/worker/*`) and worker tokens, against a real controller, a real
database (SQLite and PostgreSQL), a real workspace repository and git, the app in-process:

- a worker token calls the worker API and fetches code, nothing else (no other endpoint, no
  push, no dashboard); no other token calls the worker API;
- a claim hands out a pending batch run held by the worker at a new epoch; its configuration
  goes only to that holder at that epoch;
- log shipments are idempotent (a resend is skipped) and a gap is 409 with the offset the
  server expects; started/exit at a stale epoch are 409, and a run given up on stays ended;
- the heartbeat says which runs to stop and which the worker no longer holds."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from dockyard.controller import auth, gitstore, logs, nodes, usecases, workspaces
from dockyard.controller.store.models import Node, Run, Token
from dockyard.web.asgi import create_asgi
from tests.integration.deployed import ADMIN, TOKEN, WS, Yard, make_yard
from tests.integration.helpers import Committer
from tests.unit import samples


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url, embedded_runs=False)


@pytest.fixture
def app(yard: Yard) -> TestClient:
    return TestClient(create_asgi(yard.ctl.settings, yard.ctl))


@pytest.fixture
def worker_token(yard: Yard) -> str:
    with yard.ctl.db.session() as session:
        clear, _ = auth.create(session, "host-1", "worker", None)
    return clear


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(app: TestClient, token: str, name: str = "w1") -> int:
    body = {"name": name, "pool": "default", "slots": 2, "host": "h", "pid": 1}
    answer = app.post("/api/v1/worker/register", json=body, headers=as_(token))
    assert answer.status_code == 200, answer.text
    assert answer.json()["heartbeat_s"] == 5.0
    return int(answer.json()["incarnation"])


def claim(app: TestClient, token: str, incarnation: int, name: str = "w1") -> list[Any]:
    body = {"name": name, "incarnation": incarnation, "free_slots": 2, "wait_s": 0}
    answer = app.post("/api/v1/worker/claim", json=body, headers=as_(token))
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_a_worker_token_calls_the_worker_api_and_git_fetch_only(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    yard.deploy()
    for method, path in (
        ("GET", "/api/v1/workspaces"),
        ("GET", "/api/v1/workers"),
        ("GET", f"/api/v1/workspaces/{WS}/runs"),
        ("POST", "/api/v1/tokens"),
    ):
        refused = app.request(method, path, headers=as_(worker_token), json={"name": "x"})
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["code"] == "forbidden"
        assert "worker token may only call /api/v1/worker/" in refused.json()["error"]
    push = app.get(f"/git/{WS}.git/info/refs?service=git-receive-pack", headers=as_(worker_token))
    assert push.status_code == 403
    fetch = app.get(f"/git/{WS}.git/info/refs?service=git-upload-pack", headers=as_(worker_token))
    assert fetch.status_code == 200 and b"refs/heads/main" in fetch.content
    login = app.post(
        "/ui/login",
        data={"token": worker_token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert login.status_code == 403, login.text
    # and no other token may call the worker API, not even an admin's
    body = {"name": "w1", "pool": "default", "slots": 2}
    refused = app.post("/api/v1/worker/register", json=body, headers=as_(TOKEN))
    assert refused.status_code == 403 and "worker API needs a worker token" in refused.text
    with yard.ctl.db.session() as session:
        reader, _ = auth.create(session, "reader", "read", None)
    refused = app.post("/api/v1/worker/register", json=body, headers=as_(reader))
    assert refused.status_code == 403


def test_a_claimed_runs_config_goes_to_its_holder_at_its_epoch_only(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    yard.deploy()
    incarnation = register(app, worker_token)
    register(app, worker_token, "w2")
    run_id = yard.trigger()
    [given] = claim(app, worker_token, incarnation)
    assert given["run_id"] == run_id and given["git_path"] == f"/git/{WS}.git"
    assert given["launch_args"][:2] == ["--run-id", run_id]
    assert given["requirements"]["dlt_version"] and given["definition"]["entry_point"]
    run = yard.run(run_id)
    assert (run.status, run.holder, run.claim_epoch) == ("starting", "w1", given["epoch"])
    # the claim's own write records what the worker was told to start
    assert run.entry_point == given["entry_point"] and run.env_hash
    assert "env_hash" not in given
    assert claim(app, worker_token, incarnation) == []  # claimed once
    path = f"/api/v1/worker/runs/{run_id}/config"
    ok = app.get(path, params={"name": "w1", "epoch": given["epoch"]}, headers=as_(worker_token))
    assert ok.status_code == 200 and ".workspace" in ok.json()["files"]
    for name, epoch in (("w1", given["epoch"] + 1), ("w2", given["epoch"])):
        refused = app.get(path, params={"name": name, "epoch": epoch}, headers=as_(worker_token))
        assert refused.status_code == 409 and refused.json()["code"] == "not_held"
    # a stale incarnation claims nothing
    stale = {"name": "w1", "incarnation": incarnation + 5, "free_slots": 1, "wait_s": 0}
    assert (
        app.post("/api/v1/worker/claim", json=stale, headers=as_(worker_token)).status_code == 409
    )


def test_log_shipments_are_idempotent_and_a_stale_epoch_cannot_finish(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    yard.deploy()
    incarnation = register(app, worker_token)
    run_id = yard.trigger()
    [given] = claim(app, worker_token, incarnation)
    epoch = given["epoch"]
    started = app.post(
        f"/api/v1/worker/runs/{run_id}/started",
        json={"name": "w1", "epoch": epoch},
        headers=as_(worker_token),
    )
    assert started.status_code == 200 and yard.run(run_id).status == "running"

    def ship(offset: int, data: bytes) -> Any:
        body = {"name": "w1", "epoch": epoch, "offset": offset, "data": data.decode()}
        path = f"/api/v1/worker/runs/{run_id}/log"
        return app.post(path, json=body, headers=as_(worker_token))

    first = b'{"t": "2026-01-01T00:00:00Z", "s": "out", "m": "one"}\n'
    second = b'{"t": "2026-01-01T00:00:01Z", "s": "out", "m": "two"}\n'
    assert ship(0, first).json() == {"offset": len(first)}
    assert ship(0, first).json() == {"offset": len(first)}  # a resend: skipped
    assert ship(0, first + second).json() == {"offset": len(first + second)}  # overlap
    gap = ship(len(first + second) + 10, second)
    assert gap.status_code == 409 and gap.json()["expected"] == len(first + second)
    assert ship(0, b"no line end").status_code == 400
    # lines not in the executor's shape are refused whole: nothing of them is appended
    forged = b'{"t": "2026-01-01T00:00:02Z", "s": "out", "m": "three"}\nnot json\n'
    refused = ship(len(first + second), forged)
    assert refused.status_code == 400 and "log line 2" in refused.json()["error"], refused.text
    odd_stream = b'{"t": "2026-01-01T00:00:02Z", "s": "admin", "m": "x"}\n'
    assert ship(len(first + second), odd_stream).status_code == 400
    shipped = [ln["m"] for ln in logs.read(yard.ctl.preparer.run_dir(run_id), 0).lines]
    assert shipped.count("one") == 1 and shipped.count("two") == 1 and "three" not in shipped

    # stale epoch: refused; the right one ends the run as the runner would
    exit_body = {"name": "w1", "returncode": 0, "signal": None, "error": None}
    stale = app.post(
        f"/api/v1/worker/runs/{run_id}/exit",
        json={**exit_body, "epoch": epoch - 1},
        headers=as_(worker_token),
    )
    assert stale.status_code == 409 and yard.run(run_id).status == "running"
    done = app.post(
        f"/api/v1/worker/runs/{run_id}/exit",
        json={**exit_body, "epoch": epoch},
        headers=as_(worker_token),
    )
    assert done.status_code == 200 and done.json()["status"] == "completed"
    again = app.post(
        f"/api/v1/worker/runs/{run_id}/exit",
        json={**exit_body, "epoch": epoch},
        headers=as_(worker_token),
    )
    assert again.status_code == 409 and yard.run(run_id).status == "completed"


def test_the_heartbeat_hands_out_stops_and_given_up_runs(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    yard.deploy()
    incarnation = register(app, worker_token)
    run_id = yard.trigger()
    [given] = claim(app, worker_token, incarnation)
    app.post(
        f"/api/v1/worker/runs/{run_id}/started",
        json={"name": "w1", "epoch": given["epoch"]},
        headers=as_(worker_token),
    )

    def beat(running: list[dict[str, Any]], inc: int = incarnation) -> Any:
        body = {"name": "w1", "incarnation": inc, "running": running}
        return app.post("/api/v1/worker/heartbeat", json=body, headers=as_(worker_token))

    mine = {"run_id": run_id, "epoch": given["epoch"]}
    assert beat([mine]).json() == {"stop": [], "given_up": []}
    usecases.runs.cancel_run(yard.ctl, ADMIN, run_id)
    stop = beat([mine]).json()["stop"]
    assert stop == [{"run_id": run_id, "signal": "TERM", "reason": "cancel"}]
    assert yard.run(run_id).stop_requested_at is not None
    assert beat([mine]).json()["stop"] == []  # within the grace: nothing new
    yard.clock.advance(yard.run(run_id).grace_s + 1)
    assert beat([mine]).json()["stop"][0]["signal"] == "KILL"
    old = {"run_id": run_id, "epoch": given["epoch"] - 1}
    assert beat([old]).json()["given_up"] == [run_id]
    assert beat([mine], incarnation + 1).status_code == 409


def test_a_claimed_run_the_worker_never_reports_ends_failed_not_requeued(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    """The claim's answer never reached the worker (or it lost its data dir): after 30 s of
    heartbeats without the run, it ends `failed`; nobody starts it a second time."""
    yard.deploy()
    incarnation = register(app, worker_token)
    run_id = yard.trigger()
    claim(app, worker_token, incarnation)
    body = {"name": "w1", "incarnation": incarnation, "running": []}
    app.post("/api/v1/worker/heartbeat", json=body, headers=as_(worker_token))
    assert yard.run(run_id).status == "starting"  # just claimed: maybe still on its way
    yard.clock.advance(31)
    app.post("/api/v1/worker/heartbeat", json=body, headers=as_(worker_token))
    run = yard.run(run_id)
    assert (run.status, run.reason) == (
        "failed",
        "worker w1 does not know this run (its claim never reached it)",
    )
    assert claim(app, worker_token, incarnation) == []


def test_with_embedded_runs_off_no_timed_run_is_prepared_on_the_controller(
    yard: Yard, tmp_path: Path
) -> None:
    """A run prepared ahead of its tick is released where it was prepared: with workers taking
    batch runs the controller prepares none (it would run the job itself)."""
    assert not yard.ctl.prewarmer.enabled
    on = next(make_yard(tmp_path / "on"))  # the default: embedded runs on, prepared runs on
    try:
        assert on.ctl.prewarmer.enabled
    finally:
        on.ctl.db.dispose()


def test_a_run_that_cannot_be_described_fails_with_the_reason_and_is_not_handed_out(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    """A claim describes each run in the claim's transaction: one whose deployment cannot be
    read (here: a commit without requirements.json) fails with that reason instead of being
    handed out; the job's next run is handed out as usual."""
    yard.deploy()
    incarnation = register(app, worker_token)
    broken = yard.trigger()
    repo = gitstore.open_repo(workspaces.repo_path(yard.ctl.settings.repos_dir, WS))
    bare = Committer(repo, time=int(time.time())).commit({"code/x.py": b"x = 1\n"})
    with yard.ctl.db.session() as session:
        session.execute(update(Run).where(Run.id == broken).values(deployment_version=bare))
    assert claim(app, worker_token, incarnation) == []
    failed = yard.run(broken)
    assert failed.status == "failed" and failed.holder == "w1"
    assert failed.reason == f"deployment {bare[:12]} has no requirements.json"
    assert b"run failed before start" in logs.path(yard.ctl.preparer.run_dir(broken)).read_bytes()
    fine = yard.trigger()
    assert [given["run_id"] for given in claim(app, worker_token, incarnation)] == [fine]


def test_a_worker_name_is_bound_to_the_token_that_registered_it(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    """Another worker token can neither take a registered worker's name nor act for it
    (claim, heartbeat, a run's configuration, started, log, exit); once the first token is
    revoked, the name may be taken by another token (after the take-over rules: here the
    worker has been silent past `LOST_AFTER`)."""
    yard.deploy()
    incarnation = register(app, worker_token)
    run_id = yard.trigger()
    [given] = claim(app, worker_token, incarnation)
    with yard.ctl.db.session() as session:
        other, row = auth.create(session, "host-2", "worker", None)
        other_id = row.id
    body = {"name": "w1", "pool": "default", "slots": 2, "host": "h2", "pid": 2}
    taken = app.post("/api/v1/worker/register", json=body, headers=as_(other))
    assert taken.status_code == 409 and taken.json()["code"] == "name_taken"
    assert "belongs to another worker token ('host-1')" in taken.json()["error"]
    epoch = {"name": "w1", "epoch": given["epoch"]}
    runs = f"/api/v1/worker/runs/{run_id}"
    for method, path, payload in (
        ("POST", "/api/v1/worker/claim", {"name": "w1", "incarnation": incarnation,
                                          "free_slots": 1, "wait_s": 0}),
        ("POST", "/api/v1/worker/heartbeat", {"name": "w1", "incarnation": incarnation}),
        ("POST", f"{runs}/started", epoch),
        ("POST", f"{runs}/log", {**epoch, "offset": 0, "data": "forged\n"}),
        ("POST", f"{runs}/exit", {**epoch, "returncode": 0}),
    ):  # fmt: skip
        refused = app.request(method, path, json=payload, headers=as_(other))
        assert refused.status_code == 403, (path, refused.text)
        assert "registered with another worker token" in refused.json()["error"]
    config = app.get(f"{runs}/config", params=epoch, headers=as_(other))
    assert config.status_code == 403
    assert yard.run(run_id).status == "starting"  # nothing the other token sent landed
    assert b"forged" not in logs.path(yard.ctl.preparer.run_dir(run_id)).read_bytes()
    # the rightful token still acts for it
    ok = app.post(f"{runs}/started", json=epoch, headers=as_(worker_token))
    assert ok.status_code == 200, ok.text
    # revoked, silent past LOST_AFTER: the name may go to another token
    with yard.ctl.db.session() as session:
        first = session.scalar(select(Token).where(Token.name == "host-1"))
        assert first is not None
        auth.revoke(session, first.id)
    yard.clock.advance(nodes.LOST_AFTER.total_seconds() + 1)
    moved = app.post("/api/v1/worker/register", json=body, headers=as_(other))
    assert moved.status_code == 200, moved.text
    with yard.ctl.db.session() as session:
        node = session.scalar(select(Node).where(Node.name == "w1"))
        assert node is not None and node.token_id == other_id


def test_a_worker_that_leaves_is_listed_stopped(
    yard: Yard, app: TestClient, worker_token: str
) -> None:
    """`POST /leave` (what SIGTERM to `dockyard worker` sends) lists it `stopped` at once;
    only its own token, at its current incarnation, may say so."""
    incarnation = register(app, worker_token)
    with yard.ctl.db.session() as session:
        other, _ = auth.create(session, "host-2", "worker", None)
    body = {"name": "w1", "incarnation": incarnation}
    assert app.post("/api/v1/worker/leave", json=body, headers=as_(other)).status_code == 403
    stale = {"name": "w1", "incarnation": incarnation + 1}
    assert (
        app.post("/api/v1/worker/leave", json=stale, headers=as_(worker_token)).status_code == 409
    )
    left = app.post("/api/v1/worker/leave", json=body, headers=as_(worker_token))
    assert left.status_code == 200 and left.json()["state"] == "stopped"
    listed = app.get("/api/v1/workers", headers=as_(TOKEN)).json()
    assert [(n["name"], n["state"]) for n in listed if n["kind"] == "worker"] == [("w1", "stopped")]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # SQLite: no row locks
@pytest.mark.timeout(60)
def test_a_claim_in_progress_leaves_the_runs_it_does_not_take_to_other_workers(
    yard: Yard, app: TestClient, worker_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim looks past runs needing labels its worker lacks, but locks only the runs it
    takes: while w1's claim for one slot is in the middle of its transaction, w2's claim
    takes the next run at once instead of finding every pending run locked."""
    yard.deploy(refs=(samples.HELLO, samples.SLEEPER))  # two jobs: two pending runs
    first_inc = register(app, worker_token)
    second_inc = register(app, worker_token, "w2")
    first, second = (
        usecases.runs.trigger(yard.ctl, ADMIN, WS, [name])["triggered"][0]["run_id"]
        for name in ("hello", "sleeper")
    )
    side = yard.ctl.workers
    describing, release = threading.Event(), threading.Event()
    describe = side._describe

    def slow_describe(*args: Any) -> dict[str, Any]:
        if threading.current_thread().name == "w1-claim":
            describing.set()
            assert release.wait(30)
        return describe(*args)

    monkeypatch.setattr(side, "_describe", slow_describe)
    with yard.ctl.db.session() as session:
        token_id = session.scalar(select(Token.id).where(Token.name == "host-1"))
    assert token_id is not None
    held: list[Any] = []
    w1 = threading.Thread(
        target=lambda: held.append(side._claim_once("w1", first_inc, 1, token_id)),
        name="w1-claim",
    )
    w1.start()
    try:
        assert describing.wait(30)  # w1 holds its run, its transaction open
        body = {"name": "w2", "incarnation": second_inc, "free_slots": 2, "wait_s": 0}
        answer = app.post("/api/v1/worker/claim", json=body, headers=as_(worker_token))
        assert answer.status_code == 200, answer.text
        assert [given["run_id"] for given in answer.json()] == [second]
    finally:
        release.set()
        w1.join(30)
    [(given, tried)] = held
    assert tried and [g["run_id"] for g in given] == [first]
    assert (yard.run(first).holder, yard.run(second).holder) == ("w1", "w2")
