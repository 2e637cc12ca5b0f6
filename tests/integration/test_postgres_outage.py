"""A PostgreSQL of this module's own, restarted and stopped under a live engine, a loop and a
LISTEN connection: pooled connections the restart broke are replaced (the first query after it
works), a loop warns once per outage and goes on, the listener reconnects and wakes every loop
once, and notifications flow again. Restarting it disturbs no other test's database."""

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from dockyard.controller import loop, notify
from dockyard.controller.store.db import Database
from tests import pg


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pg.Cluster]:
    why = pg.missing()
    if why is not None:
        pytest.fail(f"this test starts its own PostgreSQL cluster: {why}")
    own = pg.Cluster.start(tmp_path_factory.mktemp("pg-outage"))
    yield own
    own.stop()


@pytest.fixture
def db(cluster: pg.Cluster) -> Iterator[Database]:
    database = Database(cluster.fresh())
    yield database
    database.dispose()


def wait_for(what: str, check: threading.Event, timeout: float = 60) -> None:
    assert check.wait(timeout), f"waited {timeout:g}s for {what}"


class Pinger(loop.Loop):
    name = "pinger"

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.ok = threading.Event()

    def step(self) -> float:
        with self.db.session() as session:
            session.execute(text("SELECT 1"))
        self.ok.set()
        return 0.2


def test_pooled_connections_broken_by_a_restart_are_replaced(
    cluster: pg.Cluster, db: Database
) -> None:
    sessions = [db.session() for _ in range(3)]  # three pooled connections, then returned
    for cm in sessions:
        cm.__enter__().execute(text("SELECT 1"))
    for cm in sessions:
        cm.__exit__(None, None, None)
    cluster.restart()
    for _ in range(3):  # each checkout finds its connection dead and opens a new one
        with db.session() as session:
            assert session.scalar(text("SELECT 1")) == 1


def test_a_loop_warns_once_per_outage_and_goes_on_after_it(
    cluster: pg.Cluster, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    pinger = Pinger(db)
    with caplog.at_level(logging.WARNING, logger=loop.__name__):
        pinger.start()
        try:
            wait_for("the first step", pinger.ok)
            cluster.stop("fast")
            time.sleep(6)  # several retries' worth
            pinger.ok.clear()
            cluster.start_again()
            wait_for("a step after the outage", pinger.ok)
        finally:
            pinger.stop()
    messages = [r.getMessage() for r in caplog.records if getattr(r, "loop", "") == "pinger"]
    assert messages == ["database unavailable; retrying until it is back", "database back"]


def test_the_listener_reconnects_and_wakes_every_loop_once(
    cluster: pg.Cluster, db: Database
) -> None:
    woken = threading.Event()
    listener = notify.Crossing(db.engine, {"RunCreated": [woken.set]})
    sender = notify.Crossing(db.engine, {})
    listener.start()
    sender.start()
    try:
        wait_for("LISTEN", listener.ready)
        woken.clear()
        cluster.restart()
        wait_for("woken after reconnecting", woken)  # whatever was sent meanwhile
        wait_for("LISTEN again", listener.ready)
        woken.clear()
        sender.send("RunCreated")
        wait_for("another server's notification", woken)
    finally:
        sender.stop()
        listener.stop()
