"""Placement end to end: a real server with a placement file and embedded runs off, a real
`dockyard worker --pool big` and a default worker, a real workspace whose jobs `require` a
large instance, nothing, or a region only a pool nobody serves has (dlt 1.31's own `require`,
through a real `dockyard deploy`):

- the large job runs on the big worker, the plain one on the default worker (`holder`);
- the job nobody can take ends `failed` with the reason naming what it needs and who is
  there, instead of waiting;
- a server given a bad placement file refuses to start with one line naming the file and key.

No timed assertion: every wait has a generous deadline."""

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import WORKSPACES, Cli, base_env, copy_workspace, make_server, wait_run
from tests.e2e.test_nodes import node, until
from tests.e2e.test_workers import start_worker, worker_token

pytestmark = pytest.mark.slow

RULES = """
[instance.size]
large = { pool = "big" }
[region]
mars-1 = { pool = "mars" }
"""


def alive(cli: Cli, name: str) -> bool:
    return node(cli, name).get("state") == "alive"


def test_each_job_runs_on_a_worker_of_its_pool_and_an_unserved_one_says_so(
    tmp_path: Path, cache_home: Path
) -> None:
    (tmp_path / "srv").mkdir()
    rules = tmp_path / "placement.toml"
    rules.write_text(RULES)
    server = make_server(
        tmp_path / "srv",
        DOCKYARD_EMBEDDED_RUNS="off",
        DOCKYARD_PLACEMENT=str(rules),
        DOCKYARD_PLACEMENT_WAIT_S="2",
    ).start()
    token = worker_token(server)
    workers = [
        start_worker(server, token, tmp_path, "small"),
        start_worker(server, token, tmp_path, "big1", "--pool", "big", "--label", "disk=ssd"),
    ]
    cli = Cli(server, cache_home, tmp_path / "config", "placed")
    try:
        for worker in workers:
            until(f"{worker.name} registered", partial(alive, cli, worker.name))
        assert node(cli, "big1")["pool"] == "big"
        cli.run("deploy", cwd=copy_workspace(WORKSPACES / "placed", tmp_path / "ws"))
        info = cli.json("job", "crunch", "info")
        assert info["placement"] == {"pool": "big", "labels": {}, "unmapped": [], "error": None}
        for job in ("crunch", "plain"):
            cli.run("launch", job, "-f")
        followed = cli.run("launch", "far_away", "-f", check=False)
        assert followed.returncode == 1 and "no worker can take it" in followed.stdout
        crunch = wait_run(cli, "crunch", timeout=600)
        plain = wait_run(cli, "plain", timeout=600)
        assert (crunch["status"], crunch["holder"]) == ("completed", "big1"), crunch
        assert (plain["status"], plain["holder"]) == ("completed", "small"), plain
        far = wait_run(cli, "far_away", timeout=180)
        assert far["status"] == "failed" and far["holder"] is None, far
        assert far["reason"] == (
            "no worker can take it: it needs pool 'mars'; live workers: big1 (pool big,"
            " disk=ssd), small (pool default)"
        )
        lines = [ln["m"] for ln in cli.json("job-run", "far_away", "logs")["lines"]]
        assert f"run failed: {far['reason']}" in lines
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def test_a_bad_placement_file_stops_the_server_with_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "placement.toml"
    rules.write_text("[machine]\nlarge = { pool = 'big' }\n")
    argv = [sys.executable, "-m", "dockyard", "server", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.run(
        [*argv, "--placement", str(rules)],
        capture_output=True,
        text=True,
        env=base_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert (
        f"placement file {rules}: key 'machine' is not valid: use only [instance.KEY], [region]"
        " and [provider] tables"
    ) in proc.stderr
    assert not (tmp_path / "data" / "dockyard.db").exists()  # refused before anything
