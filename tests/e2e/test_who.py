"""Who and why, end to end: a real server and the real CLI. A person's launch of a scheduled
job and the scheduler's fire are told apart; a cancel names its token; the audit log holds
the changes in order with their actors; a workspace-limited token reads only its own."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run

WS = "who"


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[dict[str, Any]]:
    """One server; workspace `who` made by the admin, deployed and used by token `ops`
    (deploy role, limited to `who`); workspace `other` made by the admin."""
    tmp = tmp_path_factory.mktemp("who")
    server = make_server(tmp).start()
    admin = Cli(server, cache_home, tmp / "admin-config", WS)
    try:
        admin.json("workspace", "create", WS)
        ops_token = admin.json("token", "create", "ops", "--role", "deploy", "-w", WS)
        ops = Cli(server, cache_home, tmp / "ops-config", WS, token=ops_token["token"])
        ops.run("deploy", cwd=copy_workspace(WORKSPACES / "audited", tmp / "audited"))
        admin.json("workspace", "create", "other")
        yield {"server": server, "admin": admin, "ops": ops, "ops_id": ops_token["id"]}
    finally:
        server.stop()


def runs_of(cli: Cli, job: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = cli.json("job-run", "list", job)
    return runs


def wait_for_scheduler_run(cli: Cli, job: str) -> dict[str, Any]:
    """The first run the scheduler made (a `* * * * *` job: within about a minute)."""
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        fired = [r for r in runs_of(cli, job) if r["triggered_by"] == "scheduler"]
        if fired:
            return fired[-1]
        time.sleep(1)
    raise AssertionError(f"the scheduler made no run of {job}: {runs_of(cli, job)}")


def test_a_manual_launch_and_a_scheduler_fire_are_told_apart(stand: dict[str, Any]) -> None:
    ops: Cli = stand["ops"]
    ops_label = f"ops (token #{stand['ops_id']})"
    launched = ops.json("launch", "minutely")
    assert launched["status"] == "triggered"
    fired = wait_for_scheduler_run(ops, "minutely")
    manual = next(r for r in runs_of(ops, "minutely") if r["run_id"] == launched["run_id"])

    # both carry the schedule's trigger (what dlt's launcher gets; the interval math holds)
    assert manual["trigger"] == fired["trigger"] == "schedule:* * * * *"
    assert manual["manual"] is True and manual["triggered_by"] == ops_label
    assert manual["scheduled_for"] is None
    assert fired["manual"] is False and fired["scheduled_for"] is not None
    # the text list says so too
    table = ops.run("job-run", "list", "minutely").stdout
    line = next(ln for ln in table.splitlines() if ln.split()[1] == str(manual["number"]))
    assert " manual " in line and ops_label in line
    info = ops.json("job-run", "minutely", str(manual["number"]), "info")
    assert info["triggered_by"] == ops_label and info["manual"] is True


def test_a_cancel_records_the_token_that_cancelled(stand: dict[str, Any]) -> None:
    ops: Cli = stand["ops"]
    started = ops.json("launch", "napper")
    ops.json("job-run", "napper", str(started["number"]), "cancel")
    run = wait_run(ops, "napper", started["number"])
    assert run["status"] == "cancelled"
    assert run["cancelled_by"] == f"ops (token #{stand['ops_id']})"
    assert run["triggered_by"] == f"ops (token #{stand['ops_id']})"
    shown = ops.run("job-run", "napper", str(started["number"]), "info").stdout
    line = next(ln for ln in shown.splitlines() if ln.startswith("cancelled_by "))
    assert line.split(None, 1)[1] == f"ops (token #{stand['ops_id']})"


def test_the_audit_log_holds_the_changes_in_order(stand: dict[str, Any]) -> None:
    admin: Cli = stand["admin"]
    ops: Cli = stand["ops"]
    ops.run("job", "minutely", "pause")
    events = list(reversed(admin.json("audit", "-w", WS, "--limit", "500")["events"]))
    ops_actor = {"kind": "token", "id": stand["ops_id"], "name": "ops"}
    admin_actor = {"kind": "token", "id": 1, "name": "admin (DOCKYARD_ADMIN_TOKEN)"}
    seen = [(e["action"], e["actor"]) for e in events]
    assert seen[:3] == [
        ("workspace.create", admin_actor),
        ("token.create", admin_actor),
        ("deploy", ops_actor),
    ]
    # after the deploy: the launches and the cancel of the tests above, then the pause
    assert all(actor == ops_actor for _, actor in seen[3:])
    actions = [a for a, _ in seen[3:]]
    assert actions.index("launch") < actions.index("cancel") < actions.index("pause")
    assert actions[-1] == "pause"
    deploy = events[2]
    assert deploy["workspace"] == WS and len(deploy["target"]) == 40
    assert deploy["detail"]["via"] == "push"
    token_made = events[1]
    assert token_made["target"] == "ops" and token_made["detail"]["role"] == "deploy"
    assert "token" not in token_made["detail"]  # only the prefix, never the clear token
    assert events[-1]["target"] == "jobs.__deployment__.minutely"
    cancel = next(e for e in events if e["action"] == "cancel")
    assert cancel["target"].startswith("jobs.__deployment__.napper #")
    # the text form names the actors too
    text = admin.run("audit", "-w", WS).stdout
    assert f"ops (token #{stand['ops_id']})" in text and "workspace.create" in text


def test_a_workspace_limited_token_reads_only_its_workspace(stand: dict[str, Any]) -> None:
    admin: Cli = stand["admin"]
    ops: Cli = stand["ops"]
    error = ops.fails("audit", "-w", "other")
    assert "HTTP 403" in error or "HTTP 404" in error
    mine = ops.json("audit", "--limit", "500")["events"]
    assert mine and {e["workspace"] for e in mine} == {WS}
    assert not [e for e in mine if e["action"].startswith("token.")]
    everything = admin.json("audit", "--limit", "500")["events"]
    assert ("workspace.create", "other") in {(e["action"], e["target"]) for e in everything}
    server: Server = stand["server"]
    answer = server.api("GET", "/api/v1/audit", token=ops.token, params={"workspace": "other"})
    assert answer.status_code in (403, 404)
