"""Two server processes on one PostgreSQL (and one data dir: the repositories and keys live on
storage both read, as docs/scaling.md describes): a run made through one wakes the other's
runner through LISTEN/NOTIFY, and the run is claimed and executed once."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Server, make_server, require_postgres, wait_run


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    url = require_postgres().fresh(migrated=False)
    first = make_server(tmp_path / "a", DOCKYARD_DB=url, DOCKYARD_NODE_NAME="a")
    second = make_server(tmp_path / "b", DOCKYARD_DB=url, DOCKYARD_NODE_NAME="b")
    second.data_dir = first.data_dir
    second.args = ["--log-level", "debug"]  # it logs each wake-up from another server
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_a_run_made_on_one_server_wakes_the_other_and_runs_once(
    pair: tuple[Server, Server], cache_home: Path, tmp_path: Path, basic_ws: Path
) -> None:
    first, second = pair
    cli = Cli(first, cache_home, tmp_path / "config", "pgpair")
    cli.run("deploy", cwd=basic_ws)

    cli.run("launch", "hello")
    run = wait_run(cli, "hello")

    assert run["status"] == "completed" and run["number"] == 1
    log = second.log.read_text()
    assert "woken by another server" in log and "kind=RunCreated" in log
    assert "woken by another server" in log and "kind=Deployed" in log
    # made and executed once, whichever server claimed it
    runs = first.api("GET", "/api/v1/workspaces/pgpair/runs", params={"job": "hello"}).json()
    assert [(r["number"], r["status"]) for r in runs] == [(1, "completed")]
    logs = first.api("GET", f"/api/v1/runs/{run['run_id']}/logs").json()["lines"]
    assert sum("greeting: hello from prod.config.toml" in line["m"] for line in logs) == 1
