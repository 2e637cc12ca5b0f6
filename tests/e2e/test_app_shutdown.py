"""Stopping the server stops its apps, and only them: a real server with tests/workspaces/basic
(plus a batch job that naps ~20 s) deployed, an app served and a batch run running, then
Ctrl-C (SIGINT) to the server. The app's port stops answering and its processes
are gone; after a restart the app's run is `cancelled` ("server stopped") and the batch run,
which kept going, is adopted and completes."""

import json
import os
import signal
import socket
import time
from pathlib import Path

from tests.conftest import WORKSPACES, Cli, copy_workspace, make_server, wait_run

SHORT_NAP = """

@run.job
def short_nap():
    for i in range(200):
        print(f"short nap {i}", flush=True)
        time.sleep(0.1)


__all__ += ["short_nap"]
"""


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another uid (the sandbox's) is there
        return True
    return True


def wait_for_line(cli: Cli, job: str, text: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in cli.run("logs", job, check=False).stdout:
            return
        time.sleep(0.3)
    raise AssertionError(f"{job} never printed {text!r}")


def test_ctrl_c_on_the_server_stops_apps_and_batch_runs_are_adopted(
    tmp_path: Path, cache_home: Path
) -> None:
    """SIGINT, as Ctrl-C on `make demo` sends (SIGTERM takes the same path in uvicorn)."""
    server = make_server(tmp_path).start()
    try:
        cli = Cli(server, cache_home, tmp_path / "config", "stopping")
        ws = copy_workspace(WORKSPACES / "basic", tmp_path / "basic")
        with (ws / "__deployment__.py").open("a") as handle:
            handle.write(SHORT_NAP)
        cli.run("deploy", cwd=ws)
        served = cli.json("serve", "tiny_api")
        port = int(served["entry_point"]["run_args"]["port"])
        proc = json.loads((server.data_dir / "runs" / served["run_id"] / "proc.json").read_text())
        assert answers(port) and group_alive(proc["pgid"])
        cli.run("launch", "short_nap")
        wait_for_line(cli, "short_nap", "short nap 1")
        batch = cli.json("job-run", "short_nap", "info")
        assert batch["status"] == "running"

        # the server waits for the app's grace (30 s: dlt's job launcher outlives SIGTERM,
        # so this one is killed at its end); `Server.stop` would kill the server at 20 s
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(timeout=180)
        server.proc = None

        assert not answers(port)
        assert not group_alive(proc["pgid"])
        server.start()
        app_run = cli.json("job-run", "tiny_api", "info")
        assert (app_run["run_id"], app_run["status"]) == (served["run_id"], "cancelled")
        assert app_run["reason"] == "server stopped"
        adopted = wait_run(cli, "short_nap", timeout=120)
        assert (adopted["run_id"], adopted["status"]) == (batch["run_id"], "completed")
        assert "short nap 199" in cli.run("logs", "short_nap").stdout
        # and nothing started the app again
        assert [
            r["number"] for r in cli.json("job-run", "list") if r["job_ref"].endswith("tiny_api")
        ] == [app_run["number"]]
    finally:
        server.stop()
