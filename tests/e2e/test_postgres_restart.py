"""PostgreSQL restarted, or away for ~20 s, under two running controllers (issue 14: "PostgreSQL
restarted mid-run → runs and controllers recover"). A dedicated cluster (restarting it disturbs
no other test), two `dockyard server` processes on it sharing one data dir, a ~20 s run in
flight and a minutely schedule. Afterwards: the run ends `completed` (not failed as lost),
both servers answer, a run launched afterwards completes, ticks resume with one run per tick,
and both controllers are alive in `dockyard worker list`. No timed assertion: every wait has a
generous deadline."""

import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from dockyard.clock import utcnow
from dockyard.controller import logs
from dockyard.controller.store.models import Job, Run
from tests import pg
from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run
from tests.e2e.test_nodes import until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[pg.Cluster]:
    why = pg.missing()
    if why is not None or os.environ.get("DOCKYARD_TEST_PG_URL"):
        pytest.fail(f"this test starts its own PostgreSQL cluster: {why or 'an external one'}")
    own = pg.Cluster.start(tmp_path / "pg")
    yield own
    own.stop()


def outage(cluster: pg.Cluster, kind: str) -> None:
    if kind == "restart":
        cluster.restart()
        return
    cluster.stop("fast")
    time.sleep(20)  # longer than LOST_AFTER: every heartbeat is old when it comes back
    cluster.start_again()


def duplicate_ticks(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    select(Run.job_id, Run.scheduled_for, func.count())
                    .where(Run.scheduled_for.is_not(None))
                    .group_by(Run.job_id, Run.scheduled_for)
                    .having(func.count() > 1)
                )
            )
    finally:
        engine.dispose()


def ticks_since(url: str, since: datetime) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(Run)
                    .join(Job, Job.id == Run.job_id)
                    .where(Job.job_ref.like("%minutely"), Run.created_at > since)
                )
                or 0
            )
    finally:
        engine.dispose()


def alive(cli: Cli) -> dict[str, str]:
    return {n["name"]: n["state"] for n in cli.json("worker", "list")}


@pytest.mark.parametrize("kind", ["restart", "down-20s"])
def test_runs_and_controllers_recover_when_postgresql_restarts(
    cluster: pg.Cluster, cache_home: Path, tmp_path: Path, kind: str
) -> None:
    url = cluster.fresh(migrated=False)
    ws = copy_workspace(WORKSPACES / "resilient", tmp_path / "ws")
    a = make_server(tmp_path, DOCKYARD_NODE_NAME="ctl-a", DOCKYARD_DB=url).start()
    b = make_server(tmp_path, DOCKYARD_NODE_NAME="ctl-b", DOCKYARD_DB=url)
    b.log = tmp_path / "server-b.log"
    servers: list[Server] = [a, b.start()]
    cli_a = Cli(a, cache_home, tmp_path / "config", "resilient")
    cli_b = Cli(b, cache_home, tmp_path / "config", "resilient")
    try:
        cli_a.run("deploy", cwd=ws)
        cli_a.run("launch", "steady")
        steady = wait_run(cli_a, "steady", 1, statuses=("running",), timeout=300)
        log = logs.path(a.data_dir / "runs" / steady["run_id"])
        until("a few lines printed", lambda: log.exists() and "line 5" in log.read_text())
        since = utcnow()  # the cluster runs on this host: one clock
        outage(cluster, kind)

        ended = wait_run(cli_b, "steady", 1, timeout=300)
        assert ended["status"] == "completed", ended
        assert "steady done" in log.read_text()
        until("both controllers alive", lambda: alive(cli_a) == BOTH_ALIVE, timeout=120)
        assert alive(cli_b) == BOTH_ALIVE  # both answer, and both are alive to each other
        cli_b.run("launch", "quick")
        assert wait_run(cli_a, "quick", 1, timeout=300)["status"] == "completed"
        until("a tick after the outage", lambda: ticks_since(url, since) >= 1, timeout=180)
        assert duplicate_ticks(url) == []
        for name, server in (("ctl-a", a), ("ctl-b", b)):
            assert server.proc is not None and server.proc.poll() is None, name
        assert alive(cli_a) == BOTH_ALIVE
        assert steady["holder"] in BOTH_ALIVE
    finally:
        for server in servers:
            server.stop()
    for server in servers:  # one warning per outage and loop, not one per retry
        warnings = server.log.read_text().count("database unavailable; retrying")
        assert warnings <= 30, server.log.read_text()[-3000:]


BOTH_ALIVE = {"ctl-a": "alive", "ctl-b": "alive"}
