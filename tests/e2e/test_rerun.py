"""Follow-ups that know what failed, and re-runs, through the real server, the real CLI and
real dlt runs: the `.fail` follow-up's own code prints what it was told, the run pages link
cause and effect both ways, a re-run of an interval job covers the same window again."""

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Cli, wait_run

JOBS = """

@run.job
def backfill():
    raise RuntimeError("source API answered 503")


@run.job(trigger=backfill.fail)
def on_backfill_fail(run_context):
    import json as _json

    for key in sorted(os.environ):
        if key.startswith("DOCKYARD_UPSTREAM_"):
            print(f"env {key}={os.environ[key]}", flush=True)
    print("run_args " + _json.dumps(run_context.get("run_args"), sort_keys=True), flush=True)


@run.job(trigger="0 3 * * *", interval={"start": "2026-01-01T00:00:00+00:00"})
def daily(run_context):
    start, end = run_context["interval_start"], run_context["interval_end"]
    print(f"window {start.isoformat()} {end.isoformat()}", flush=True)


__all__ = __all__ + ["backfill", "on_backfill_fail", "daily"]
"""

BACKFILL = "jobs.__deployment__.backfill"


def deploy(cli: Cli, ws: Path) -> None:
    source = ws / "__deployment__.py"
    source.write_text(source.read_text() + JOBS)
    cli.run("deploy", cwd=ws)


@contextmanager
def dashboard(cli: Cli) -> Iterator[httpx.Client]:
    """A logged-in browser session on the dashboard (a form posted from its own origin)."""
    with httpx.Client(base_url=cli.server.url, timeout=30, follow_redirects=False) as client:
        own = {"Origin": cli.server.url}
        assert client.post("/ui/login", data={"token": cli.server.token}, headers=own).is_redirect
        yield client


def csrf_of(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def env_lines(log: str) -> dict[str, str]:
    found = re.findall(r"env (DOCKYARD_UPSTREAM_\w+)=(.*)", log)
    return {key: value.strip() for key, value in found}


def test_a_fail_follow_up_is_told_what_failed_and_the_pages_link_both_ways(
    cli: Cli, basic_ws: Path
) -> None:
    deploy(cli, basic_ws)
    cli.run("launch", "backfill")
    upstream = wait_run(cli, "backfill")
    assert upstream["status"] == "failed" and upstream["reason"]
    follow_up = wait_run(cli, "on_backfill_fail", 1)
    assert follow_up["status"] == "completed" and follow_up["cause_run_id"] == upstream["run_id"]

    log = cli.run("logs", "on_backfill_fail", "--all").stdout
    told = env_lines(log)
    page = f"{cli.server.url}/ui/w/{cli.workspace}/runs/{upstream['run_id']}"
    assert told == {
        "DOCKYARD_UPSTREAM_WORKSPACE": cli.workspace,
        "DOCKYARD_UPSTREAM_JOB": BACKFILL,
        "DOCKYARD_UPSTREAM_RUN_NUMBER": "1",
        "DOCKYARD_UPSTREAM_RUN_ID": upstream["run_id"],
        "DOCKYARD_UPSTREAM_STATUS": "failed",
        "DOCKYARD_UPSTREAM_REASON": upstream["reason"],
        "DOCKYARD_UPSTREAM_URL": page,
    }
    # the same through dlt's run context
    run_args: dict[str, Any] = json.loads(log.split("run_args ", 1)[1].splitlines()[0])
    assert run_args["upstream_job"] == BACKFILL and run_args["upstream_run_number"] == 1
    assert run_args["upstream_reason"] == upstream["reason"]

    # `job-run … info`: cause and effect both ways
    down = cli.run("job-run", "on_backfill_fail", "1", "info").stdout
    assert re.search(rf"follow-up of\s+{re.escape(BACKFILL)} #1 \(failed\)", down)
    up = cli.json("job-run", "backfill", "1", "info")
    assert [r["run_id"] for r in up["links"]["follow_ups"]] == [follow_up["run_id"]]
    assert "started" in cli.run("job-run", "backfill", "1", "info").stdout

    # the dashboard's run pages link to each other
    with dashboard(cli) as browser:
        base = f"/ui/w/{cli.workspace}/runs"
        effect = browser.get(f"{base}/{follow_up['run_id']}").text
        cause = browser.get(f"{base}/{upstream['run_id']}").text
    assert re.search(rf'follow-up of <a href="{base}/{upstream["run_id"]}">backfill #1</a>', effect)
    assert re.search(
        rf'started: <a href="{base}/{follow_up["run_id"]}">on_backfill_fail #1</a>', cause
    )


def test_rerun_covers_the_same_window_again_and_is_refused_for_an_active_run(
    cli: Cli, basic_ws: Path
) -> None:
    deploy(cli, basic_ws)
    cli.run("launch", "daily")
    first = wait_run(cli, "daily", 1)
    assert first["status"] == "completed" and first["interval_start"] != first["interval_end"]
    covered = cli.json("job", "daily", "info")["interval"]["completed_up_to"]
    assert covered == first["interval_end"]

    again = cli.json("job-run", "daily", "1", "rerun")
    assert again["number"] == 2 and again["rerun_of"] == first["run_id"]
    assert again["status"] in ("pending", "starting")  # starting: it took a warm process
    second = wait_run(cli, "daily", 2)
    assert second["status"] == "completed"
    assert (second["interval_start"], second["interval_end"]) == (
        first["interval_start"],
        first["interval_end"],
    )
    # the ledger: the window was covered once, and still is; nothing moved
    assert cli.json("job", "daily", "info")["interval"]["completed_up_to"] == covered
    window_lines = re.findall(r"window \S+ \S+", cli.run("logs", "daily", "2").stdout)
    assert window_lines == re.findall(r"window \S+ \S+", cli.run("logs", "daily", "1").stdout)
    assert len(window_lines) == 1
    shown = cli.run("job-run", "daily", "1", "info").stdout
    assert re.search(r"re-run as\s+jobs.__deployment__.daily #2 \(completed\)", shown)

    # the dashboard's button: a re-run of the re-run, then its page says what it is
    with dashboard(cli) as browser:
        base = f"/ui/w/{cli.workspace}/runs"
        page = browser.get(f"{base}/{second['run_id']}").text
        assert 'id="rerun"' in page
        posted = browser.post(
            f"{base}/{second['run_id']}/rerun",
            data={"csrf_token": csrf_of(page)},
            headers={"Origin": cli.server.url},
        )
        assert posted.status_code == 303
        third_page = browser.get(posted.headers["location"]).text
        forged = browser.post(
            f"{base}/{second['run_id']}/rerun",
            data={"csrf_token": "x"},
            headers={"Origin": cli.server.url},
        )
    assert forged.status_code == 403
    assert re.search(rf're-run of <a href="{base}/{second["run_id"]}">daily #2</a>', third_page)
    third = wait_run(cli, "daily", 3)
    assert third["rerun_of"] == second["run_id"]
    assert third["interval_start"] == first["interval_start"]
    assert len(cli.json("job-run", "list", "daily")) == 3  # the forged post made nothing

    # an active run is not re-run
    cli.run("launch", "napper")
    wait_run(cli, "napper", 1, statuses=("running",))
    error = cli.fails("job-run", "napper", "1", "rerun")
    assert "run #1 of jobs.__deployment__.napper is still running; cancel it first" in error
    cli.run("job-run", "napper", "1", "cancel")
