"""The dashboard's reads (`controller.dashboard`) and pages on a real controller: a real
SQLite file, a real workspace repository, the real reconciler and lifecycle; pages rendered
in-process (the browser tests drive a real server)."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from dockyard.clock import FakeClock
from dockyard.controller import (
    auth,
    beacon,
    dashboard,
    gitstore,
    manifests,
    runs,
    usecases,
    workspaces,
)
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import RunStatus
from dockyard.controller.store.models import Run
from dockyard.errors import Forbidden, InvalidInput
from dockyard.settings import Settings
from dockyard.web import formatting
from dockyard.web.asgi import create_asgi
from tests.integration.helpers import Committer
from tests.unit import samples

WS = "dash"
ADMIN = auth.Principal(1, "admin", None)
TOKEN = "dy_dashboard_test_admin_token_01"
LAUNCHER = "dlt._workspace.deployment.launchers.job"
NOW = datetime(2026, 3, 4, 10, 2, tzinfo=UTC)


def job(name: str, *triggers: str, tags: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "engine_version": 2,
        "job_ref": f"jobs.d.{name}",
        "entry_point": {"module": "d", "function": name, "job_type": "batch", "launcher": LAUNCHER},
        "triggers": list(triggers),
        "execute": {"concurrency": 1},
        "expose": {"manual": True, "tags": list(tags)},
        "description": f"the {name} job",
    }
    if any(t.startswith("schedule:") for t in triggers):
        definition["default_trigger"] = triggers[0]
    definition.update(extra)
    return definition


@dataclass
class Dash:
    ctl: Controller
    clock: FakeClock
    committer: Committer

    def deploy(
        self, *jobs: dict[str, Any], source: bytes = b"x = 1\n", message: str = "deploy"
    ) -> str:
        manifest = {"engine_version": 2, "deployment_module": "__deployment__", "jobs": list(jobs)}
        manifests.validate(manifest)
        sha = self.committer.commit(
            {
                gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
                gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
                "code/d.py": source,
            },
            message,
        )
        self.ctl.reconciler.reconcile(WS)
        return sha

    def trigger(self, name: str) -> dict[str, Any]:
        made: dict[str, Any] = usecases.runs.trigger(self.ctl, ADMIN, WS, [name])["triggered"][0]
        return made

    def finish(self, run_id: str, status: str = "completed") -> None:
        with self.ctl.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            self.ctl.lifecycle.advance(session, run, RunStatus(status), self.clock.now())


@pytest.fixture
def dash(tmp_path: Path, database_url: str) -> Iterator[Dash]:
    clock = FakeClock(NOW)
    settings = Settings(
        data_dir=tmp_path / "data", db_url=database_url, start_loops=False, admin_token=TOKEN
    )
    ctl = Controller(settings, clock=clock)
    ctl.bootstrap()
    usecases.workspaces.create_workspace(ctl, ADMIN, WS)
    repo = gitstore.open_repo(workspaces.repo_path(settings.repos_dir, WS))
    yield Dash(ctl, clock, Committer(repo))
    ctl.db.dispose()


def add_runs(dash: Dash, job_ref: str, count: int, same_second: int = 3) -> list[str]:
    """`count` finished runs; every `same_second` of them share one created_at."""
    with dash.ctl.db.session() as session:
        ws = workspaces.get(session, WS)
        found = runs.find_job(session, ws, job_ref)
        start = found.runs_created
        ids = [str(uuid.uuid4()) for _ in range(count)]
        rows: list[dict[str, Any]] = [
            {
                "id": ids[i],
                "workspace_id": ws.id,
                "job_id": found.id,
                "number": start + i + 1,
                "trigger": f"manual:{job_ref}",
                "status": "failed" if i % 5 == 0 else "completed",
                "created_at": NOW - timedelta(seconds=(count - i) // same_second),
                "refresh": False,
                "timeout_s": 60.0,
                "grace_s": 1.0,
            }
            for i in range(count)
        ]
        session.execute(insert(Run), rows)
        found.runs_created = start + count
    return ids


def walk(dash: Dash, **filters: Any) -> list[str]:
    seen, after = [], None
    while True:
        page = dashboard.runs_page(dash.ctl, ADMIN, WS, after=after, limit=40, **filters)
        seen += [r["run_id"] for r in page["runs"]]
        if page["next"] is None:
            return seen
        created, run_id = page["next"]
        after = formatting.decode_cursor(formatting.encode_cursor(created, run_id))


def test_keyset_pages_list_every_run_once_newest_first(dash: Dash) -> None:
    dash.deploy(job("a"), job("b"))
    a_runs, b_runs = add_runs(dash, "a", 130), add_runs(dash, "b", 70)
    with dash.ctl.db.session() as session:
        order = {r.id: (r.created_at, r.id) for r in session.scalars(select(Run))}
    everything = walk(dash)
    assert sorted(everything) == sorted(a_runs + b_runs)  # none lost, none twice
    assert everything == sorted(order, key=lambda i: order[i], reverse=True)
    assert sorted(walk(dash, job="a")) == sorted(a_runs)
    failed = walk(dash, status="failed")
    assert len(failed) == 26 + 14 and set(failed) <= set(a_runs + b_runs)
    with pytest.raises(InvalidInput, match="unknown run status"):
        dashboard.runs_page(dash.ctl, ADMIN, WS, status="exploded")


def test_the_jobs_list_filters_groups_by_tag_and_pages(dash: Dash) -> None:
    dash.deploy(
        job("ingest_a", "schedule:0 3 * * *", tags=("ingest", "nightly")),
        job("ingest_b", tags=("ingest",)),
        job("report", "job.success:jobs.d.ingest_a"),
        job("gone"),
    )
    dash.deploy(
        job("ingest_a", "schedule:0 3 * * *", tags=("ingest", "nightly")),
        job("ingest_b", tags=("ingest",)),
        job("report", "job.success:jobs.d.ingest_a"),
    )
    usecases.jobs.pause_job(dash.ctl, ADMIN, WS, "ingest_a", paused=True)

    def listed(**kwargs: Any) -> list[tuple[str, list[str]]]:
        page = dashboard.jobs_page(dash.ctl, ADMIN, WS, dashboard.JobFilter(**kwargs))
        return [(tag, [j["name"] for j in jobs]) for tag, jobs in page["groups"]]

    assert listed() == [
        ("ingest", ["ingest_a", "ingest_b"]),
        ("nightly", ["ingest_a"]),
        ("untagged", ["report"]),
    ]
    assert listed(tag="nightly") == [("nightly", ["ingest_a"])]
    both = [("ingest", ["ingest_a"]), ("nightly", ["ingest_a"])]
    assert listed(text="ingest_a") == [*both, ("untagged", ["report"])]  # report's trigger
    assert listed(state="paused") == both
    assert listed(state="archived") == [("untagged", ["gone"])]
    page = dashboard.jobs_page(dash.ctl, ADMIN, WS, dashboard.JobFilter(), offset=1, limit=2)
    assert page["entries"] == 4 and [t for t, _ in page["groups"]] == ["ingest", "nightly"]
    (paused,) = page["groups"][1][1]
    assert paused["paused_at"] == NOW.isoformat() and paused["paused_by"].startswith("admin")


def test_the_overview_counts_jobs_and_puts_failures_first(dash: Dash) -> None:
    dash.deploy(job("a"), job("b"), job("c"))
    for name, status in (("a", "failed"), ("b", "completed")):
        dash.finish(dash.trigger(name)["run_id"], status)
    running = dash.trigger("c")
    data = dashboard.overview(dash.ctl, ADMIN, WS)
    assert data["jobs"] == {"active": 3, "paused": 0, "archived": 0}
    assert data["last_runs"] == {"failed": 1, "completed": 1, "pending": 1}
    assert [r["job_ref"] for r in data["failing"]] == ["jobs.d.a"]
    assert [r["run_id"] for r in data["active"]] == [running["run_id"]]
    assert data["recent"][0]["status"] == "failed" and data["failed_24h"] == 1


def test_the_overview_lists_the_queue_and_says_it_waits_for_a_run_slot(
    tmp_path: Path, database_url: str
) -> None:
    """With every run slot of this server in use, pending batch runs wait: the overview lists
    them in the order they start and the run says why (run page, API)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=database_url,
        start_loops=False,
        admin_token=TOKEN,
        run_slots=1,
    )
    clock = FakeClock(NOW)
    ctl = Controller(settings, clock=clock)
    try:
        ctl.bootstrap()
        ctl.join()  # this server is a live node with one slot
        usecases.workspaces.create_workspace(ctl, ADMIN, WS)
        repo = gitstore.open_repo(workspaces.repo_path(settings.repos_dir, WS))
        dash = Dash(ctl, FakeClock(NOW), Committer(repo))
        dash.deploy(job("a"), job("b"), job("c"))
        first = dash.trigger("a")["run_id"]
        assert dashboard.overview(ctl, ADMIN, WS)["queue"]["waiting"] is None  # a slot is free
        with ctl.db.session() as session:
            assert ctl.lifecycle.claim(session, first, NOW, ctl.lifecycle.node) is not None
        clock.set(NOW + timedelta(seconds=1))
        second = dash.trigger("b")["run_id"]
        clock.set(NOW + timedelta(seconds=2))  # created at one instant, runs start in id order
        third = dash.trigger("c")["run_id"]
        queue = dashboard.overview(ctl, ADMIN, WS)["queue"]
        assert queue["count"] == 2
        assert [r["run_id"] for r in queue["runs"]] == [second, third]
        assert queue["waiting"] == "waiting for a run slot: 1 of 1 in use"
        info = usecases.runs.run_by_id(ctl, ADMIN, third)
        assert info["waiting"] == "waiting for a run slot: 1 of 1 in use"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with TestClient(create_asgi(settings, ctl), headers=headers) as client:
            page = client.get(f"/ui/w/{WS}").text
            run_page = client.get(f"/ui/w/{WS}/runs/{third}").text
        assert 'id="queue"' in page and "waiting for a run slot: 1 of 1 in use" in page
        assert "waiting for a run slot: 1 of 1 in use" in run_page
    finally:
        ctl.db.dispose()


def test_a_weighted_run_counts_its_weight_in_what_a_waiting_run_says(
    tmp_path: Path, database_url: str
) -> None:
    """Two slots, `large` weighs 2: one large run takes both, so the next run waits and
    says 2 of 2 in use (counting runs, it said nothing: 1 of 2)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=database_url,
        start_loops=False,
        admin_token=TOKEN,
        run_slots=2,
        slot_weights="large=2",
    )
    clock = FakeClock(NOW)
    ctl = Controller(settings, clock=clock)
    try:
        ctl.bootstrap()
        ctl.join()
        usecases.workspaces.create_workspace(ctl, ADMIN, WS)
        repo = gitstore.open_repo(workspaces.repo_path(settings.repos_dir, WS))
        dash = Dash(ctl, FakeClock(NOW), Committer(repo))
        dash.deploy(job("big", require={"instance": {"size": "large"}}), job("small"))
        big = dash.trigger("big")["run_id"]
        with ctl.db.session() as session:
            assert ctl.lifecycle.claim(session, big, NOW, ctl.lifecycle.node) is not None
        clock.set(NOW + timedelta(seconds=1))
        small = dash.trigger("small")["run_id"]
        waiting = "waiting for a run slot: 2 of 2 in use"
        assert usecases.runs.run_by_id(ctl, ADMIN, small)["waiting"] == waiting
        assert dashboard.overview(ctl, ADMIN, WS)["queue"]["waiting"] == waiting
    finally:
        ctl.db.dispose()


def test_a_jobs_history_has_its_ledger_and_latest_skip(dash: Dash) -> None:
    interval = {"start": "2026-03-04T08:00:00+00:00"}
    dash.deploy(job("hourly", "schedule:0 * * * *", interval=interval))
    first = dash.trigger("hourly")
    dash.clock.set(NOW + timedelta(seconds=1))
    skipped = dash.trigger("hourly")  # concurrency 1: the first is still pending
    assert skipped["status"] == "skipped"
    dash.finish(first["run_id"])
    history = dashboard.job_history(dash.ctl, ADMIN, WS, "hourly")
    (window,) = history["ledger"]
    assert (window["start"], window["end"], window["status"]) == (
        "2026-03-04T08:00:00+00:00",
        "2026-03-04T10:00:00+00:00",
        "completed",
    )
    assert history["latest_skip"]["reason"] == skipped["skip_reason"]
    assert [r["number"] for r in history["runs"]] == [2, 1]


def test_the_diff_of_any_two_deployments(dash: Dash) -> None:
    v1 = dash.deploy(job("a"), job("b"))
    dash.deploy(job("a"), job("b"), job("c"), source=b"x = 2\n")
    v3 = dash.deploy(job("a", "schedule:0 3 * * *"), job("c"), source=b"x = 3\n")
    diff = dashboard.deployment_diff(dash.ctl, ADMIN, WS, v1, v3)
    assert diff["plan"]["added"] == ["jobs.d.c"]
    assert diff["plan"]["updated"] == ["jobs.d.a"]
    assert diff["plan"]["archived"] == ["jobs.d.b"]
    assert diff["changed_fields"]["jobs.d.a"] == ["default_trigger", "triggers"]
    assert diff["files"] == ["code/d.py", "manifest.yaml"]
    back = dashboard.deployment_diff(dash.ctl, ADMIN, WS, v3, v1)  # either direction
    assert back["plan"]["added"] == ["jobs.d.b"]


def test_the_deployments_page_shows_each_versions_source_commit(
    dash: Dash, client: TestClient
) -> None:
    src = "3f2a" + "0" * 36
    dash.deploy(job("a"))  # from a folder: no trailer
    dash.deploy(
        job("a"), job("b"), message=f"deploy\n\n{gitstore.SOURCE_TRAILER}: acme/etl@{src}\n"
    )
    page = client.get(f"/ui/w/{WS}/deployments").text
    assert "<th>Source commit</th>" in page
    assert f'title="acme/etl@{src}">acme/etl@{src[:12]}' in page.replace("\n", "")
    assert "from a folder" in page


def test_pipelines_come_from_the_runs_state_and_trace_payloads(dash: Dash) -> None:
    dash.deploy(job("load"))
    run_id = dash.trigger("load")["run_id"]
    with dash.ctl.db.session() as session:
        beacon.record(session, run_id, "state", samples.state())
        beacon.record(session, run_id, "trace", samples.trace())
    (pipeline,) = dashboard.pipelines(dash.ctl, ADMIN, WS)
    assert (pipeline["pipeline"], pipeline["destination"]) == ("numbers_pipeline", "duckdb")
    (schema,) = pipeline["schemas"]
    assert [t["name"] for t in schema["tables"]] == ["numbers", "_dlt_loads"]  # dlt's last
    assert schema["tables"][0]["columns"][0] == {
        "name": "n",
        "data_type": "bigint",
        "nullable": True,
        "primary_key": False,
    }
    (load,) = pipeline["loads"]
    assert load["tables"] == {"numbers": 5, "_dlt_pipeline_state": 1}
    assert load["run"]["run_id"] == run_id


def test_pausing_needs_the_deploy_role(dash: Dash) -> None:
    dash.deploy(job("a", "schedule:0 3 * * *"))
    reader = auth.Principal(2, "read", None)
    with pytest.raises(Forbidden, match="needs 'deploy'"):
        usecases.jobs.pause_job(dash.ctl, reader, WS, "a", paused=True)


@pytest.fixture
def client(dash: Dash) -> Iterator[TestClient]:
    app = create_asgi(dash.ctl.settings, dash.ctl)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


def test_every_page_renders(dash: Dash, client: TestClient) -> None:
    interval = {"start": "2026-03-04T08:00:00+00:00"}
    dash.deploy(job("hourly", "schedule:0 * * * *", tags=("x",), interval=interval), job("b"))
    made = dash.trigger("hourly")
    dash.finish(made["run_id"])
    base = f"/ui/w/{WS}"
    for path in (
        base,
        f"{base}/jobs",
        f"{base}/jobs/hourly",
        f"{base}/runs",
        f"{base}/runs/{made['run_id']}",
        f"{base}/deployments",
        f"{base}/configuration",
        f"{base}/pipelines",
        f"{base}/settings",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert "<title>" in response.text
    page = client.get(f"{base}/jobs/hourly").text
    assert "Ledger" in page and "2026-03-04 08:00:00 UTC" in page


def test_htmx_gets_only_the_part_it_swaps(dash: Dash, client: TestClient) -> None:
    dash.deploy(job("a"))
    headers = {"HX-Request": "true", "HX-Target": "jobs-table"}
    part = client.get(f"/ui/w/{WS}/jobs?q=a", headers=headers).text
    assert part.startswith('<div id="jobs-table">') and "<html" not in part
    live = client.get(f"/ui/w/{WS}", headers={"HX-Request": "true", "HX-Target": "overview-live"})
    assert live.text.startswith('<section id="overview-live"')


def test_pages_answer_a_missing_session_with_the_login_page(dash: Dash) -> None:
    app = create_asgi(dash.ctl.settings, dash.ctl)
    with TestClient(app, follow_redirects=False) as anonymous:
        response = anonymous.get(f"/ui/w/{WS}/runs?status=failed")
        assert response.status_code == 303
        assert (
            response.headers["location"]
            == "/ui/login?next=%2Fui%2Fw%2Fdash%2Fruns%3Fstatus%3Dfailed"
        )
        htmx = anonymous.get(f"/ui/w/{WS}", headers={"HX-Request": "true"})
        assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/ui/login")
        api = anonymous.get(f"/api/v1/workspaces/{WS}/jobs")
        assert api.status_code == 401 and "error" in api.json()  # the API stays JSON


@pytest.mark.parametrize(
    ("base", "secure"), [("http://testserver", False), ("https://testserver", True)]
)
def test_the_session_cookie_is_httponly_lax_and_secure_over_https(
    dash: Dash, base: str, secure: bool
) -> None:
    app = create_asgi(dash.ctl.settings, dash.ctl)
    with TestClient(app, base_url=base, follow_redirects=False) as browser:
        response = browser.post(
            "/ui/login", data={"token": TOKEN, "next": "/ui/w/dash/runs"}, headers={"Origin": base}
        )
        assert response.status_code == 303 and response.headers["location"] == "/ui/w/dash/runs"
        cookie = response.headers["set-cookie"]
        assert "dockyard_session=" in cookie and TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert ("Secure" in cookie) is secure


def test_a_login_posted_from_another_site_is_refused(dash: Dash) -> None:
    app = create_asgi(dash.ctl.settings, dash.ctl)
    with TestClient(app, follow_redirects=False) as browser:
        for origin in ("https://evil.example", "http://nb--dash.apps.localhost:8765", "null"):
            forged = browser.post("/ui/login", data={"token": TOKEN}, headers={"Origin": origin})
            assert forged.status_code == 403 and "set-cookie" not in forged.headers
        # a session is a credential: minted only for a form posted from this origin
        bare = browser.post("/ui/login", data={"token": TOKEN})
        assert bare.status_code == 403 and "no Origin header" in bare.text
        elsewhere = browser.post(
            "/ui/login",
            data={"token": TOKEN, "next": "//evil.example"},
            headers={"Origin": "http://testserver"},
        )
        assert elsewhere.headers["location"] == "/ui/"


def test_minting_a_token_takes_the_csrf_token_and_a_same_origin_origin(dash: Dash) -> None:
    app = create_asgi(dash.ctl.settings, dash.ctl)
    own = {"Origin": "http://testserver"}
    with TestClient(app, follow_redirects=False) as browser:
        browser.post("/ui/login", data={"token": TOKEN}, headers=own)
        page = browser.get(f"/ui/w/{WS}/settings").text
        csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"name": "minted", "role": "admin", "csrf_token": csrf}
        refused = [
            browser.post(f"/ui/w/{WS}/tokens", data=form),
            browser.post(f"/ui/w/{WS}/tokens", data=form, headers={"Origin": "null"}),
            browser.post(
                f"/ui/w/{WS}/tokens",
                data=form,
                headers={"Origin": "http://nb--dash.apps.localhost:8765"},
            ),
            browser.post(f"/ui/w/{WS}/tokens", data={**form, "csrf_token": "x"}, headers=own),
        ]
        assert [r.status_code for r in refused] == [403, 403, 403, 403]
        assert "Origin" in refused[0].text and "CSRF" in refused[3].text
        assert "minted" not in [t["name"] for t in usecases.tokens.list_tokens(dash.ctl, ADMIN)]
        made = browser.post(f"/ui/w/{WS}/tokens", data=form, headers=own)
    assert made.status_code == 200 and "new-token-value" in made.text
    assert "minted" in [t["name"] for t in usecases.tokens.list_tokens(dash.ctl, ADMIN)]


def test_the_job_listing_follows_a_redeploy_and_shows_each_jobs_last_run(dash: Dash) -> None:
    """The listing reads plain rows and keeps what it shows of a definition by its hash:
    a redeploy that changes a job's description, tags or triggers shows the new ones at
    once, and each job's last run is its own."""
    dash.deploy(job("a", tags=("old",)), job("b"))
    first = dash.trigger("a")["run_id"]
    listed = {j["name"]: j for j in usecases.jobs.list_jobs(dash.ctl, ADMIN, WS)}
    assert listed["a"]["tags"] == ["old"] and listed["a"]["description"] == "the a job"
    assert listed["a"]["last_run"]["run_id"] == first and listed["b"]["last_run"] is None
    listed["a"]["tags"].append("mutated by a caller")  # never reaches the next listing

    changed = job("a", "schedule:5 * * * *", tags=("new",), description="changed")
    dash.deploy(changed, job("b"))
    dash.clock.set(NOW + timedelta(seconds=1))
    second = dash.trigger("b")["run_id"]
    listed = {j["name"]: j for j in usecases.jobs.list_jobs(dash.ctl, ADMIN, WS)}
    assert listed["a"]["tags"] == ["new"] and listed["a"]["description"] == "changed"
    assert listed["a"]["triggers"] == ["schedule:5 * * * *"]
    assert listed["a"]["triggers_humanized"] and listed["a"]["next_fire_at"] is not None
    assert listed["b"]["last_run"]["run_id"] == second
    # a row's run reads as the run's own object does (`run info`)
    info = usecases.runs.run_by_id(dash.ctl, ADMIN, first)
    assert {k: info[k] for k in listed["a"]["last_run"]} == listed["a"]["last_run"]
