"""What a new user reads of jobs, deployments and workspaces (issue 13, item 10): a pause and
the next run in `job list`/`job info`, dlt's selector forms, the trigger a dry run matched,
old → new values of a deployment, display names and the workspace description, and the
dashboard opening the workspace last used. One real server and one workspace deployed twice
for the whole module; nothing here runs a job."""

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import WORKSPACES, Cli, Server, make_server

WS = "dayone"
NIGHTLY_REF = "jobs.__deployment__.nightly"
SOURCE = '''"""Day-one workspace: nightly loads and a report."""

from dlt.hub import run


@run.job(trigger="{cron}", expose={{"tags": ["ingest"], "display_name": "Nightly load"}})
def nightly():
    print("nightly")


@run.job(expose={{"tags": ["report"]}})
def report():
    print("report")


__all__ = ["nightly", "report"]
'''


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, cache_home: Path
) -> Iterator[tuple[Cli, Path]]:
    """The workspace deployed with `nightly` at 03:00, then again at 04:30."""
    tmp = tmp_path_factory.mktemp("dayone")
    server = make_server(tmp).start()
    try:
        ws = tmp / "ws"
        ws.mkdir()
        shutil.copy(WORKSPACES / "scheduled" / "pyproject.toml", ws)
        shutil.copytree(WORKSPACES / "scheduled" / ".dlt", ws / ".dlt")
        cli = Cli(server, cache_home, tmp / "config", WS)
        cli.run("workspace", "create", WS)
        for cron in ("0 3 * * *", "30 4 * * *"):
            (ws / "__deployment__.py").write_text(SOURCE.format(cron=cron))
            cli.run("deploy", cwd=ws)
        yield cli, ws
    finally:
        server.stop()


def table(text: str) -> list[dict[str, str]]:
    """`output.table`'s text as rows keyed by the lower-case headers (columns found by the
    header's positions)."""
    header, *rows = text.splitlines()
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)*", header)]
    names = [header[a:b].strip().lower() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {n: row[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for row in rows
    ]


def test_job_list_and_info_show_the_pause_the_next_run_and_the_display_name(
    deployed: tuple[Cli, Path],
) -> None:
    cli, _ws = deployed
    rows = {r["job"]: r for r in table(cli.run("job", "list").stdout)}
    assert rows["nightly"]["display name"] == "Nightly load"
    assert rows["nightly"]["status"] == "active"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:30:00", rows["nightly"]["next run"])
    assert rows["report"]["next run"] == "-"  # manual only

    paused = cli.json("job", "nightly", "pause")
    listed = {j["name"]: j for j in cli.json("job", "list")}
    nightly = listed["nightly"]
    assert nightly["paused_at"] == paused["paused_at"] and nightly["paused_by"]
    assert nightly["next_fire_at"] is None and nightly["display_name"] == "Nightly load"
    rows = {r["job"]: r for r in table(cli.run("job", "list").stdout)}
    assert rows["nightly"]["status"] == "paused" and rows["nightly"]["next run"] == "paused"

    info = cli.run("job", "nightly", "info").stdout
    when = paused["paused_at"][:19].replace("T", " ")
    assert re.search(rf"^paused +since {when} by {re.escape(nightly['paused_by'])}$", info, re.M)
    assert re.search(r"^display name +Nightly load$", info, re.M)
    assert re.search(r"^next run +paused$", info, re.M)

    cli.run("job", "nightly", "resume")
    info = cli.run("job", "nightly", "info").stdout
    assert re.search(r"^paused +no$", info, re.M)
    assert re.search(r"^next run +\d{4}-\d\d-\d\d \d\d:30:00$", info, re.M)


def refs(cli: Cli, *selectors: str) -> list[str]:
    return sorted(j["job_ref"] for j in cli.json("job", *selectors, "list"))


def test_dlt_selector_forms_pick_jobs_everywhere(deployed: tuple[Cli, Path]) -> None:
    cli, _ws = deployed
    report = "jobs.__deployment__.report"
    assert refs(cli, "tag:ingest") == [NIGHTLY_REF]
    assert refs(cli, "batch") == [NIGHTLY_REF, report]
    assert refs(cli, "interactive") == ["jobs.workspace.dashboard"]  # dlt adds it
    assert refs(cli, "schedule:*") == [NIGHTLY_REF]
    assert refs(cli, "jobs.*.rep*") == [report]
    assert refs(cli, "manual:jobs.__deployment__.n*") == [NIGHTLY_REF]
    assert refs(cli, "tag:report", "tag:ingest") == [NIGHTLY_REF, report]
    assert refs(cli, "report") == [report]  # a plain name is that job
    rows = table(cli.run("job", "tag:ingest", "list").stdout)
    assert [r["job"] for r in rows] == ["nightly"]

    (one,) = cli.json("job", "tag:report", "info")  # a selector: a list of infos
    assert one["job_ref"] == report and "definition" in one
    assert cli.json("job", "report", "info")["job_ref"] == report  # a name: one object
    assert "no job matches tag:nothing" in cli.fails("job", "tag:nothing", "info")
    assert "no job 'nope'" in cli.fails("job", "nope", "list")
    assert "pause takes one job name, not a selector" in cli.fails("job", "tag:ingest", "pause")
    assert "usage: dockyard job" in cli.fails("job", "a", "b", "pause")
    many = cli.server.api("GET", f"/api/v1/workspaces/{WS}/jobs", params={"selector": ["x"] * 51})
    assert many.status_code == 400, many.text  # bounded

    # the same selectors start, cancel and list runs
    assert cli.json("cancel", "tag:ingest") == {"cancelled": [], "not_running": [NIGHTLY_REF]}
    assert cli.json("job-run", "list", "tag:ingest") == []


def test_trigger_dry_run_shows_the_trigger_that_matched(deployed: tuple[Cli, Path]) -> None:
    cli, _ws = deployed
    (by_tag,) = cli.json("trigger", "--dry-run", "tag:ingest")["triggered"]
    assert by_tag["matched_trigger"] == "tag:ingest" and by_tag["trigger"] == "tag:ingest"
    shown = cli.run("trigger", "--dry-run", "tag:ingest").stdout
    assert shown.startswith("would_trigger") and f"{NIGHTLY_REF}  (matched tag:ingest)\n" in shown

    (by_name,) = cli.json("trigger", "--dry-run", "nightly")["triggered"]
    assert by_name["matched_trigger"] == f"manual:{NIGHTLY_REF}"
    assert by_name["trigger"] == "schedule:30 4 * * *"  # a manual start keeps the interval math
    shown = cli.run("trigger", "--dry-run", "nightly").stdout
    assert f"(matched manual:{NIGHTLY_REF}; runs as schedule:30 4 * * *)" in shown
    assert cli.json("job-run", "list", "nightly") == []  # a dry run starts nothing


@contextlib.contextmanager
def login(
    server: Server, token: str, cookies: dict[str, str] | None = None
) -> Iterator[httpx.Client]:
    """A browser-like client logged in to the dashboard with `token` (and these cookies)."""
    with httpx.Client(base_url=server.url, timeout=30, cookies=cookies) as client:
        answer = client.post(
            "/ui/login", data={"token": token, "next": "/ui/"}, headers={"Origin": server.url}
        )
        assert answer.status_code == 303, answer.text
        yield client


def test_deployment_info_and_diff_show_old_and_new_values(deployed: tuple[Cli, Path]) -> None:
    cli, _ws = deployed
    info = cli.json("deployment", "info")
    changes = {c["field"]: c for c in info["field_changes"][NIGHTLY_REF]}
    assert set(changes) == {"default_trigger", "triggers"}
    assert changes["triggers"]["old"] == '["schedule:0 3 * * *"]'
    assert changes["triggers"]["new"] == '["schedule:30 4 * * *"]'
    text = cli.run("deployment", "info").stdout
    assert f"  updated   {NIGHTLY_REF}" in text
    assert '    triggers: ["schedule:0 3 * * *"] -> ["schedule:30 4 * * *"]' in text
    assert "  file      manifest.yaml" in text

    with login(cli.server, cli.server.token) as web:
        page = web.get(
            f"/ui/w/{WS}/deployments",
            params={"old": info["previous_version"], "new": info["version"]},
        )
    assert page.status_code == 200
    body = page.text.replace("&#34;", '"')
    assert '<del>["schedule:0 3 * * *"]</del> &rarr; <ins>["schedule:30 4 * * *"]</ins>' in body


def test_workspace_description_and_display_names_are_shown(deployed: tuple[Cli, Path]) -> None:
    cli, _ws = deployed
    described = "Day-one workspace: nightly loads and a report."
    listed = {w["name"]: w for w in cli.json("workspace", "list")}
    assert listed[WS]["description"] == described
    rows = {r["name"]: r for r in table(cli.run("workspace", "list").stdout)}
    assert rows[WS]["description"] == described
    assert re.search(rf"^description +{re.escape(described)}$", cli.run("info").stdout, re.M)

    with login(cli.server, cli.server.token) as web:
        overview = web.get(f"/ui/w/{WS}").text
        jobs = web.get(f"/ui/w/{WS}/jobs").text
        job = web.get(f"/ui/w/{WS}/jobs/{quote(NIGHTLY_REF, safe='')}").text
        found = web.get(f"/ui/w/{WS}/jobs", params={"q": "nightly load"}).text
    assert f'<p class="muted" id="ws-description">{described}</p>' in overview
    assert ">Nightly load</a>" in jobs
    assert "<h1>Nightly load <small" in job
    assert ">Nightly load</a>" in found  # the filter searches display names


def test_after_login_the_dashboard_opens_the_workspace_last_used(
    deployed: tuple[Cli, Path],
) -> None:
    cli, _ws = deployed
    server = cli.server
    cli.run("workspace", "create", "aaa-first")  # alphabetically before WS
    with login(server, server.token) as web:
        assert web.get("/ui/").headers["location"] == "/ui/w/aaa-first"  # nothing remembered
        assert web.get(f"/ui/w/{WS}/jobs").status_code == 200
        remembered = dict(web.cookies)
    assert remembered["dockyard_ws"] == WS

    # the same browser, logged in again: the workspace last used opens
    with login(server, server.token, cookies={"dockyard_ws": WS}) as again:
        assert again.get("/ui/").headers["location"] == f"/ui/w/{WS}"

    # a token that may not see the remembered workspace gets its own first one
    scoped: dict[str, Any] = cli.json(
        "token", "create", "aaa-reader", "--role", "read", "-w", "aaa-first"
    )
    with login(server, scoped["token"], cookies={"dockyard_ws": WS}) as other:
        assert other.get("/ui/").headers["location"] == "/ui/w/aaa-first"
