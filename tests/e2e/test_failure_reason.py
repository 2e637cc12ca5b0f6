"""A failed run says why, through a real server and the real CLI: a deployed job that
imports a module its environment lacks (from a submodule, once it runs) fails with the
exception, the workspace file and line as its reason, in `job-run list`, `job-run info`,
`job info` and the API; and `logs` of a skipped run prints why it was skipped."""

from pathlib import Path

import pytest

from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, wait_run

REASON = "ModuleNotFoundError: No module named 'ibis_is_not_installed' (usgs/transformations.py:5)"


@pytest.fixture(scope="module")
def fcli(server: Server, cache_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    tmp = tmp_path_factory.mktemp("failing")
    cli = Cli(server, cache_home, tmp / "config", "failing")
    cli.run("deploy", cwd=copy_workspace(WORKSPACES / "failing", tmp / "failing"))
    return cli


def test_a_failed_run_names_the_exception_and_the_workspace_line(fcli: Cli, server: Server) -> None:
    proc = fcli.run("launch", "transform", "-f", check=False)
    assert proc.returncode == 1
    assert f"run #1 of jobs.__deployment__.transform: failed ({REASON})" in proc.stderr

    run = fcli.json("job-run", "transform", "info")
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert run["reason"] == REASON
    tail = run["traceback"].splitlines()
    assert tail[-1] == "ModuleNotFoundError: No module named 'ibis_is_not_installed'"
    assert any('usgs/transformations.py", line 5, in <module>' in line for line in tail)

    listed = fcli.run("job-run", "list").stdout
    assert REASON in listed
    assert [r["reason"] for r in fcli.json("job-run", "list")] == [REASON]
    shown = fcli.run("job-run", "transform", "info").stdout
    assert REASON in shown and "traceback (its end):" in shown
    last_run = next(
        line
        for line in fcli.run("job", "transform", "info").stdout.splitlines()
        if line.startswith("last run")
    )
    assert "#1 failed at " in last_run and last_run.endswith(f": {REASON}")
    assert fcli.json("job", "transform", "info")["last_run"]["reason"] == REASON

    answer = server.api("GET", f"/api/v1/runs/{run['run_id']}").json()
    assert answer["reason"] == REASON and answer["traceback"] == run["traceback"]
    listed_api = server.api("GET", "/api/v1/workspaces/failing/runs").json()
    assert [r["reason"] for r in listed_api if r["run_id"] == run["run_id"]] == [REASON]
    assert "traceback" not in listed_api[0]  # lists stay light: the details carry it

    log = fcli.run("logs", "transform").stdout
    assert f"run failed: {REASON}" in log  # dockyard's own last line says it too


def test_logs_of_a_skipped_run_print_why_it_was_skipped(fcli: Cli) -> None:
    fcli.run("launch", "busy")
    wait_run(fcli, "busy", 1, statuses=("running",))
    fcli.run("launch", "busy")
    skipped = wait_run(fcli, "busy", 2)
    assert skipped["status"] == "skipped"
    try:
        proc = fcli.run("logs", "busy", "2")
        assert proc.stdout.strip().splitlines() == [
            "run #2 of jobs.__deployment__.busy was skipped: "
            "concurrency limit 1 reached: run #1 still active"
        ]
        assert fcli.run("logs", "busy", "2", "-f").returncode == 0
    finally:
        fcli.run("job-run", "busy", "1", "cancel")
    assert wait_run(fcli, "busy", 1)["status"] == "cancelled"
