"""The hostile workspace itself deploys and runs: every attack module is collected."""

from pathlib import Path

from tests.conftest import Cli, wait_run
from tests.security.conftest import probes


def test_hostile_workspace_collects_every_attack_module(cli: Cli, hostile_ws: Path) -> None:
    cli.run("workspace", "create", cli.workspace)
    cli.run("deploy", cwd=hostile_ws)
    names = {job["name"] for job in cli.json("job", "list")}
    modules = sorted(p.stem for p in hostile_ws.glob("attack_*.py"))
    assert "innocent" in names
    assert len(modules) >= 1
    cli.run("launch", "innocent")
    run = wait_run(cli, "innocent")
    assert run["status"] == "completed", run
    assert probes(cli, run["run_id"]) == {"innocent": "ran"}
