"""Two real `dockyard server` processes on one data dir and one SQLite database, as nodes A
and B: SIGKILL A while its run is running, and B ends that run `failed` with the reason,
once, leaves its own run alone, and never starts A's run a second time; `dockyard worker
list` shows A lost and B alive. A restarted A takes its name back and kills the process of
the run that was given up on. No timed assertion: every wait has a generous deadline."""

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.controller import logs
from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run

DOZER = """

@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def dozer():
    for i in range(6000):
        print(f"doze {i}", flush=True)
        time.sleep(0.1)
"""


def workspace(tmp_path: Path) -> Path:
    """The basic workspace with a second slow job (each job runs one at a time)."""
    ws = copy_workspace(WORKSPACES / "basic", tmp_path / "ws")
    source = ws / "__deployment__.py"
    text = source.read_text().replace('"tiny_api"]', '"tiny_api", "dozer"]')
    source.write_text(text + DOZER)
    return ws


def until(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"waited {timeout:g}s for {what}")


def node(cli: Cli, name: str) -> dict[str, Any]:
    nodes = {n["name"]: n for n in cli.json("worker", "list")}
    return dict(nodes.get(name) or {})


def run_log(server: Server, run: dict[str, Any]) -> str:
    """A run's log file as the servers wrote it (one JSON line each, `controller/logs.py`)."""
    return logs.path(server.data_dir / "runs" / run["run_id"]).read_text()


def last_run(cli: Cli, job: str) -> dict[str, Any]:
    return dict(cli.json("job-run", "list", job)[0])


def test_a_lost_controllers_run_ends_failed_once_and_the_other_keeps_its_own(
    cache_home: Path, tmp_path: Path
) -> None:
    ws = workspace(tmp_path)
    a = make_server(tmp_path, DOCKYARD_NODE_NAME="node-a").start()
    b = make_server(tmp_path, DOCKYARD_NODE_NAME="node-b")
    b.log = tmp_path / "server-b.log"
    cli_a = Cli(a, cache_home, tmp_path / "config", "nodes")
    cli_b = Cli(b, cache_home, tmp_path / "config", "nodes")
    try:
        cli_a.run("deploy", cwd=ws)
        cli_a.run("launch", "napper")
        napper = wait_run(cli_a, "napper", 1, statuses=("running",), timeout=300)
        assert napper["holder"] == "node-a"
        b.start()  # B starts beside A: A's run is not B's to touch
        until("both alive", lambda: node(cli_b, "node-a").get("state") == "alive")
        assert node(cli_b, "node-b")["state"] == "alive"
        assert node(cli_b, "node-a")["slots_in_use"] == 1
        same_name = make_server(tmp_path, DOCKYARD_NODE_NAME="node-b")
        same_name.log = tmp_path / "server-c.log"
        with pytest.raises(RuntimeError, match="server exited"):
            same_name.start()  # B is alive under that name: refused, one line says why
        assert "error: node name node-b is in use by another live server" in (
            same_name.log.read_text()
        )

        kill(a)  # A disappears; only B is left to claim and to notice
        cli_b.run("launch", "dozer")
        dozer = wait_run(cli_b, "dozer", 1, statuses=("running",), timeout=300)
        assert dozer["holder"] == "node-b"

        failed = until(
            "A's run ended by B",
            lambda: (r := last_run(cli_b, "napper"))["status"] == "failed" and r,
        )
        assert failed["reason"].startswith("controller node-a lost (last heartbeat ")
        assert failed["reason"].endswith(" UTC)")
        assert last_run(cli_b, "dozer")["status"] == "running"  # B's own run: untouched
        listed = {n["name"]: n for n in cli_b.json("worker", "list")}
        assert (listed["node-a"]["state"], listed["node-b"]["state"]) == ("lost", "alive")
        assert (listed["node-a"]["kind"], listed["node-b"]["kind"]) == ("controller",) * 2
        table = cli_b.run("worker", "list").stdout
        assert "node-a" in table and "lost" in table and "alive" in table

        log = run_log(a, napper)  # the whole log (the CLI shows its tail)
        assert log.count('"nap 0"') == 1  # started once, never again
        assert log.count('"starting ') == 1
        assert log.count("run failed: controller node-a lost") == 1

        # A comes back under its name: the process of its given-up run is killed, nothing
        # restarts it, and the run stays failed with B's reason
        a.start()
        until("the orphan killed", lambda: "given up on" in run_log(a, napper))
        assert node(cli_b, "node-a")["state"] == "alive"
        final = last_run(cli_b, "napper")
        assert (final["status"], final["reason"]) == ("failed", failed["reason"])
        assert run_log(a, napper).count('"starting ') == 1
        assert last_run(cli_b, "dozer")["status"] == "running"
        cli_b.run("job-run", "dozer", "1", "cancel")
        wait_run(cli_b, "dozer", 1, timeout=120)
    finally:
        kill(a)
        b.stop()


def kill(server: Server) -> None:
    if server.proc is not None:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=60)
        server.proc = None
