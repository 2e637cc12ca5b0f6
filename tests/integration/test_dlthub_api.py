"""The dlthub client's API (`compat/dlthub`) in-process on a real controller, SQLite and
PostgreSQL: the rules the client holds a server to (every success exactly 200, every error a
JSON object with a string `detail`, pages with a true `total`, newest runs first), which the
contract test with the real client (tests/e2e/test_dlthub_cli.py) relies on without showing.
"""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.compat.dlthub import ids
from dockyard.controller import auth, gitstore, usecases, workspaces
from dockyard.web.asgi import create_asgi
from tests.integration.deployed import ADMIN, TOKEN, WS, Yard, make_yard
from tests.unit import samples


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url, dlthub_compat=True)


@pytest.fixture
def client(yard: Yard) -> TestClient:
    app = create_asgi(yard.ctl.settings, yard.ctl)
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


def ws_id(yard: Yard) -> str:
    return str(usecases.workspaces.workspace_info(yard.ctl, ADMIN, WS)["dlthub_id"])


def ok(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    answer = client.request(method, f"/dlthub{path}", **kwargs)
    assert answer.status_code == 200, answer.text  # the client refuses 201 and 204
    return answer.json()


def refused(answer: Any, status: int) -> str:
    """`answer` (the test client's response) is an error the client can show."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert isinstance(body, dict) and isinstance(body["detail"], str) and body["detail"]
    assert "code" not in body  # the client then says "(HTTP n)" after the detail
    return str(body["detail"])


def test_every_error_is_an_object_with_a_string_detail(yard: Yard, client: TestClient) -> None:
    ws = f"/dlthub/api/v1/workspaces/{ws_id(yard)}"
    assert "invalid or revoked" in refused(
        client.get(ws, headers={"Authorization": "Bearer dlt_sa_nope"}), 401
    )
    assert "missing token" in refused(TestClient(client.app).get(ws), 401)
    assert "not a UUID" in refused(client.get("/dlthub/api/v1/workspaces/sales"), 400)
    other = f"/dlthub/api/v1/workspaces/{uuid.uuid4()}"
    assert "no workspace" in refused(client.get(other), 404)
    # a FastAPI validation problem is one line, not a list the client cannot show
    assert "limit" in refused(client.get(f"{ws}/jobs?limit=0"), 400)
    # "none yet": the client reads a 404 here as no deployment, if its body is JSON
    refused(client.get(f"{ws}/deployments/latest"), 404)
    refused(client.get(f"{ws}/configurations/latest"), 404)
    assert "no such endpoint" in refused(client.get("/dlthub/api/v1/nope"), 404)
    # an upload goes to this server's root, at the one path the client accepts
    answer = client.post(f"{ws}/deployments/-issue-upload")
    assert answer.status_code == 200, answer.text
    issued = answer.json()
    path = f"/api/v1/workspaces/{ws_id(yard)}/deployments/{issued['deployment_id']}/-upload"
    assert issued["upload_url"] == f"http://testserver{path}"
    assert issued["upload_token"] == TOKEN
    # ... where a package that is not one is refused in one line
    bad = client.post(path, files={"file": ("workspace.tar.gz", b"not a tarball")})
    assert "is not a gzip tar archive as dlt builds it" in refused(bad, 400)


def test_a_manifest_of_many_jobs_is_not_cut_off_as_an_oversized_body(
    yard: Yard, client: TestClient
) -> None:
    """A 1,000-job manifest is megabytes: `-deploy` is capped like a deploy, not like a small
    request (the dry run then refuses the filler jobs for what they are, not for their size)."""
    filler = [{"job_ref": f"jobs.m.j{i}", "pad": "x" * 400} for i in range(1000)]
    body = {"jobs": filler, "deployment_module": "__deployment__", "dry_run": True}
    answer = client.post(f"/dlthub/api/v1/workspaces/{ws_id(yard)}/-deploy", json=body)
    assert "manifest does not match" in refused(answer, 400)


def test_a_key_limited_to_another_workspace_is_told_which(yard: Yard, client: TestClient) -> None:
    usecases.workspaces.create_workspace(yard.ctl, ADMIN, "other")
    made = usecases.tokens.create_token(yard.ctl, ADMIN, "o", "read", "other", dlthub=True)
    assert made["token"].startswith(auth.DLTHUB_PREFIX)
    key = {"Authorization": f"Bearer {made['token']}"}
    detail = refused(client.get(f"/dlthub/api/v1/workspaces/{ws_id(yard)}", headers=key), 403)
    assert "limited to workspace 'other'" in detail and ws_id(yard) in detail
    batch = {"selectors": ["batch"]}
    trigger = client.post(
        f"/dlthub/api/v1/workspaces/{ws_id(yard)}/jobs/-trigger", headers=key, json=batch
    )
    refused(trigger, 403)


def test_a_worker_token_is_refused(yard: Yard, client: TestClient) -> None:
    with yard.ctl.db.session() as session:
        clear, _ = auth.create(session, "w", auth.WORKER, None)
    worker = {"Authorization": f"Bearer {clear}"}
    answer = client.get(f"/dlthub/api/v1/workspaces/{ws_id(yard)}", headers=worker)
    assert "worker token may only call" in refused(answer, 403)


def test_reads_trigger_and_cancel_in_the_clients_shapes(yard: Yard, client: TestClient) -> None:
    sha = yard.deploy()
    ws = f"/api/v1/workspaces/{ws_id(yard)}"
    workspace = ok(client, "GET", ws)
    assert workspace["dataplane_url"] == "http://testserver/dlthub"
    assert workspace["organization_id"] == ids.ORGANIZATION_ID

    jobs = ok(client, "GET", f"{ws}/jobs", params={"limit": 1, "offset": 0})
    assert (jobs["total"], jobs["limit"], len(jobs["items"])) == (1, 1, 1)
    job = jobs["items"][0]
    assert job["job_ref"] == samples.HELLO and job["is_paused"] is False
    assert f"manual:{samples.HELLO}" in job["triggers"]
    assert ok(client, "GET", f"{ws}/jobs/{job['id']}")["id"] == job["id"]
    by_ref = ok(client, "GET", f"{ws}/jobs", params={"ref": samples.HELLO})
    assert [j["id"] for j in by_ref["items"]] == [job["id"]]
    assert ok(client, "GET", f"{ws}/jobs", params={"is_archived": "true"})["total"] == 0

    latest = ok(client, "GET", f"{ws}/deployments/latest")
    assert latest["version"] == 1 and latest["id"] == ids.deployment_id(_row_id(yard), sha)
    repo = gitstore.open_repo(workspaces.repo_path(yard.ctl.settings.repos_dir, WS))
    code = [(p, e.data) for p, e in gitstore.iter_files(repo, sha, gitstore.CODE)]
    assert latest["content_hash"] == ids.content_hash(code)  # dlt's, so no upload is needed
    assert ok(client, "GET", f"{ws}/deployments", params={"version": 1})["total"] == 1
    assert ok(client, "GET", f"{ws}/deployments", params={"version": 2})["items"] == []

    dry = ok(client, "POST", f"{ws}/jobs/-trigger", json={"job_ids": [job["id"]], "dry_run": True})
    assert dry["succeeded"][0]["job_run_id"] is None
    first = ok(client, "POST", f"{ws}/jobs/-trigger", json={"job_ids": [job["id"]]})
    second = ok(client, "POST", f"{ws}/jobs/-trigger", json={"selectors": ["batch"]})
    run_id = first["succeeded"][0]["job_run_id"]
    assert first["succeeded"][0]["job_run"]["number"] == 1
    skip = second["skipped"][0]
    assert skip["status"] == "skipped_concurrency_limit" and skip["job_run_id"] is None
    assert skip["reasons"] == ["concurrency limit 1 reached: run #1 still active"]

    runs = ok(client, "GET", f"{ws}/job-runs", params={"limit": 1})
    assert runs["total"] == 2 and runs["items"][0]["number"] == 2  # newest first
    assert runs["items"][0]["status"] == "skipped"
    pending = ok(client, "GET", f"{ws}/job-runs", params=[("status", "pending")])
    assert [r["id"] for r in pending["items"]] == [run_id]
    numbered = ok(client, "GET", f"{ws}/job-runs", params={"job_id": job["id"], "number": 1})
    assert numbered["items"][0]["job"]["id"] == job["id"]

    assert ok(client, "POST", f"{ws}/job-runs/{run_id}/-cancel")["status"] == "cancelled"
    again = client.post(f"/dlthub{ws}/job-runs/{run_id}/-cancel")
    assert "already ended" in refused(again, 409)
    bulk = ok(client, "POST", f"{ws}/job-runs/-cancel", json={"job_run_ids": [run_id]})
    assert bulk["succeeded"] == [] and bulk["skipped"][0]["previous_status"] == "cancelled"

    stored = client.get(f"/dlthub/logs/v1/workspaces/{ws_id(yard)}/job-runs/{run_id}/logs")
    assert stored.status_code == 200
    for line in stored.text.splitlines():
        assert set(json.loads(line)) >= {"content", "line_num", "reported_at", "source"}
    skipped_id = runs["items"][0]["id"]
    live = client.get(f"/dlthub/logs/v1/workspaces/{ws_id(yard)}/job-runs/{skipped_id}/log-stream")
    assert live.status_code == 200  # and closed: the run has ended
    assert live.text.startswith("event: log\ndata: ")
    assert "skipped: concurrency limit 1 reached" in live.text


def test_the_links_the_client_prints_open_dashboard_pages(yard: Yard, client: TestClient) -> None:
    yard.deploy()
    run_id = yard.trigger()
    ws = ws_id(yard)
    job = ok(client, "GET", f"/api/v1/workspaces/{ws}/jobs")["items"][0]["id"]
    links = {
        f"/w/{ws}": f"/ui/w/{WS}",
        f"/w/{ws}/runs/{run_id}": f"/ui/w/{WS}/runs/{run_id}",
        f"/w/{ws}/jobs/{job}": f"/ui/w/{WS}/jobs/{samples.HELLO}",
        f"/w/{ws}/jobs/{samples.HELLO}": f"/ui/w/{WS}/jobs/{samples.HELLO}",
        f"/w/{ws}/pipelines/numbers": f"/ui/w/{WS}",
    }
    for link, page in links.items():
        answer = client.get(link, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (307, page), link
    assert client.get(f"/w/{uuid.uuid4()}", follow_redirects=False).status_code == 404
    assert client.get(f"/w/{ws}/runs/{uuid.uuid4()}", follow_redirects=False).status_code == 404


def _row_id(yard: Yard) -> int:
    with yard.ctl.db.session() as session:
        return workspaces.get(session, WS).id


def test_the_api_and_its_links_are_off_unless_asked_for(tmp_path: Path) -> None:
    for off in make_yard(tmp_path / "data"):
        app = create_asgi(off.ctl.settings, off.ctl)
        plain = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
        assert plain.get("/dlthub/api/v1/organizations").status_code == 404
        assert plain.get(f"/w/{uuid.uuid4()}").status_code == 404


def test_a_package_over_the_push_limit_is_refused_before_it_is_read_whole(
    tmp_path: Path,
) -> None:
    """An upload is held in memory (a configuration package's secrets are clear until they
    are sealed): it stops at DOCKYARD_MAX_PUSH_BYTES, as a push does, with nothing staged."""
    for yard in make_yard(tmp_path / "data", dlthub_compat=True, max_push_bytes=50_000):
        client = TestClient(
            create_asgi(yard.ctl.settings, yard.ctl), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        path = f"/api/v1/workspaces/{ws_id(yard)}/deployments/{uuid.uuid4()}/-upload"
        big = client.post(path, files={"file": ("workspace.tar.gz", b"\0" * 60_000)})
        assert "larger than 50000 bytes" in refused(big, 413)
        repo = gitstore.open_repo(workspaces.repo_path(yard.ctl.settings.repos_dir, WS))
        assert repo.references.get("refs/dockyard/dlthub/code") is None
