"""The JSON API's declared shapes (`web/api_models.py`) against real answers, and its error
body `{"error", "code"}`: a real controller, a real SQLite file and workspace repository, the
app in-process.

FastAPI filters every answer through its declared model, so a key missing from a model
could vanish from the answer: each answer here must equal what its use case returns, and
every key in it must be declared (so `/openapi.json` documents it)."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter

from dockyard.controller import auth, gitstore, leases, manifests, sealing, usecases
from dockyard.errors import DockyardError
from dockyard.web import api_models as M
from dockyard.web.asgi import create_asgi
from tests.integration.deployed import ADMIN, TOKEN, WS, Yard, make_yard
from tests.unit import samples

RESOURCES = [
    "Me", "Workspace", "WorkspaceInfo", "WorkspaceSettings", "Token", "TokenCreated", "Job",
    "JobInfo", "ScheduleChange", "Run", "RunDetails", "LogPage", "TriggerResult",
    "CancelJobsResult", "CancelRunResult", "Version", "Deployment", "Configuration",
    "Reconciled", "AppliedReconciliation", "Key", "KeyRotation", "AppListed",
    "AppServed", "Link", "LinkCreated", "LinksRevoked", "GithubLinkCreated", "GithubUnlinked",
    "Lease", "Error",
]  # fmt: skip


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url)


@pytest.fixture
def client(yard: Yard) -> TestClient:
    app = create_asgi(yard.ctl.settings, yard.ctl)
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


def undeclared(value: Any, where: str = "") -> list[str]:
    """The keys of a validated answer that its model does not declare, with their path."""
    if isinstance(value, BaseModel):
        found = [f"{where}.{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += undeclared(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, list):
        return [key for i, item in enumerate(value) for key in undeclared(item, f"{where}[{i}]")]
    return []


def answer(client: TestClient, method: str, path: str, model: Any, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    assert response.status_code < 300, response.text
    body = response.json()
    assert undeclared(TypeAdapter(model).validate_python(body)) == [], path
    return body


def same(data: Any) -> Any:
    """What the use case returned, as JSON would carry it."""
    return json.loads(json.dumps(data))


def test_every_answer_keeps_every_key_and_declares_it(yard: Yard, client: TestClient) -> None:
    sha = yard.deploy()
    api = f"/api/v1/workspaces/{WS}"
    ctl = yard.ctl

    assert answer(client, "GET", "/api/v1/me", M.Me)["role"] == "admin"
    listed = answer(client, "GET", "/api/v1/workspaces", list[M.Workspace])
    assert listed == same(usecases.workspaces.list_workspaces(ctl, ADMIN, describe=True))
    info = answer(client, "GET", api, M.WorkspaceInfo)
    assert info == same(usecases.workspaces.workspace_info(ctl, ADMIN, WS))
    body = {"executor": None}
    assert answer(client, "PATCH", api, M.WorkspaceSettings, json=body)["executor"] is None

    made = answer(client, "POST", "/api/v1/tokens", M.TokenCreated, json={"name": "t"})
    assert made["token"] and "hash" not in json.dumps(made)
    tokens = answer(client, "GET", "/api/v1/tokens", list[M.Token])
    assert tokens == same(usecases.tokens.list_tokens(ctl, ADMIN))
    answer(client, "DELETE", f"/api/v1/tokens/{made['id']}", M.Token)

    dry = {"selectors": ["hello"], "dry_run": True}
    would = answer(client, "POST", f"{api}/trigger", M.TriggerResult, json=dry)
    assert set(would["triggered"][0]) == {
        "job_ref",
        "trigger",
        "matched_trigger",
        "run_id",
        "status",
    }
    started = answer(client, "POST", f"{api}/trigger", M.TriggerResult, json={"selectors": ["*"]})
    run_id = started["triggered"][0]["run_id"]
    assert started["triggered"][0]["run"]["run_id"] == run_id

    jobs = answer(client, "GET", f"{api}/jobs", list[M.Job])
    assert jobs == same(usecases.jobs.list_jobs(ctl, ADMIN, WS))
    job = answer(client, "GET", f"{api}/jobs/hello", M.JobInfo)
    assert job == same(usecases.jobs.job_info(ctl, ADMIN, WS, "hello"))
    answer(client, "POST", f"{api}/jobs/hello/pause", M.Job)
    answer(client, "POST", f"{api}/jobs/hello/resume", M.Job)
    preview = {"jobs": [{**samples.job(samples.HELLO), "triggers": ["schedule:0 * * * *"]}]}
    changes = answer(
        client, "POST", f"{api}/schedule-preview", list[M.ScheduleChange], json=preview
    )
    assert changes and changes[0]["new_triggers"] == ["schedule:0 * * * *"]

    runs = answer(client, "GET", f"{api}/runs", list[M.Run])
    assert runs == same(usecases.runs.list_runs(ctl, ADMIN, WS))
    one = answer(client, "GET", f"/api/v1/runs/{run_id}", M.RunDetails)
    assert one == same(usecases.runs.run_by_id(ctl, ADMIN, run_id))
    assert answer(client, "GET", f"{api}/jobs/hello/runs/0", M.RunDetails) == one
    page = answer(client, "GET", f"/api/v1/runs/{run_id}/logs?count=true", M.LogPage)
    assert page == same(usecases.runs.run_logs(ctl, ADMIN, run_id, count=True))
    answer(client, "POST", f"/api/v1/runs/{run_id}/cancel", M.CancelRunResult)
    again = answer(client, "POST", f"{api}/trigger", M.TriggerResult, json={"selectors": ["*"]})
    cancelled = answer(
        client, "POST", f"{api}/cancel", M.CancelJobsResult, json={"selectors": ["*"]}
    )
    assert cancelled["cancelled"][0]["run_id"] == again["triggered"][0]["run_id"]

    versions = answer(client, "GET", f"{api}/deployments", list[M.Version])
    assert versions == same(usecases.deployments.versions(ctl, ADMIN, WS, "deployment"))
    deployment = answer(client, "GET", f"{api}/deployments/latest", M.Deployment)
    assert deployment == same(usecases.deployments.deployment_info(ctl, ADMIN, WS, None))
    applied = answer(client, "GET", f"{api}/reconciliations/{sha}", M.AppliedReconciliation)
    assert applied == same(usecases.deployments.reconciliation(ctl, ADMIN, WS, sha))
    assert answer(client, "POST", f"{api}/reconcile", M.Reconciled)["changed"] is False
    answer(client, "GET", f"{api}/configurations", list[M.Version])

    key = answer(client, "GET", f"{api}/key", M.Key)
    assert key == same(sealing.key_info(ctl, ADMIN, WS, "show"))
    assert "fingerprint_key" in answer(client, "GET", f"{api}/key?purpose=deploy", M.Key)
    rotated = answer(client, "POST", f"{api}/rotate-key", M.KeyRotation)
    assert rotated["retired_key_id"] == key["key_id"]
    assert answer(client, "GET", f"{api}/apps", list[M.AppListed]) == []
    workers = answer(client, "GET", "/api/v1/workers", list[M.Worker])
    assert workers == same(usecases.workers.list_workers(ctl, ADMIN))


def test_github_link_answers_are_declared(yard: Yard, client: TestClient) -> None:
    api = f"/api/v1/workspaces/{WS}"
    body = {"repo": "acme/pipelines", "token": "ghp_x"}
    made = answer(client, "POST", f"{api}/github", M.GithubLinkCreated, json=body)
    assert made["webhook_secret"] and "token" not in made
    info = answer(client, "GET", api, M.WorkspaceInfo)
    assert info == same(usecases.workspaces.workspace_info(yard.ctl, ADMIN, WS))
    assert info["github"]["repo"] == "acme/pipelines" and info["github"]["last_delivery"] is None
    answer(client, "DELETE", f"{api}/github", M.GithubUnlinked)


def test_a_lease_answer_is_declared_and_for_admins_only(yard: Yard, client: TestClient) -> None:
    yard.ctl.leases.guard(leases.SWEEP).refresh()  # what the server's keeper does at start
    found = answer(client, "GET", "/api/v1/leases", list[M.Lease])
    assert found == same(usecases.leases.list_leases(yard.ctl, ADMIN))
    assert [(x["name"], x["epoch"], x["held"], x["this_server"]) for x in found] == [
        (leases.SWEEP, 1, True, True)
    ]
    assert found[0]["holder"] == yard.ctl.holder
    reader = usecases.tokens.create_token(yard.ctl, ADMIN, "reader", "read", None)["token"]
    refused = client.get("/api/v1/leases", headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403


def test_a_configuration_answer_is_declared(yard: Yard, client: TestClient) -> None:
    manifest = manifests.dump_yaml(samples.manifest(samples.HELLO)).encode()
    config = {f"{gitstore.CONFIG}/config.toml": b'greeting = "hi"\n'}
    yard.committer.commit({gitstore.MANIFEST: manifest, **config})
    yard.ctl.reconciler.reconcile(WS)
    api = f"/api/v1/workspaces/{WS}"
    found = answer(client, "GET", f"{api}/configurations/latest", M.Configuration)
    assert found == same(sealing.configuration_info(yard.ctl, ADMIN, WS, None))
    assert found["files"][0]["keys"] == ["greeting"]


def test_openapi_names_a_schema_for_each_resource(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert [name for name in RESOURCES if name not in schemas] == []
    ok = spec["paths"]["/api/v1/workspaces/{ws}/jobs/{job}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobInfo"}
    assert "fingerprint_key" in schemas["Key"]["properties"]


def error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code, body
    assert "\n" not in body["error"]
    return str(body["error"])


def test_every_error_is_error_and_code(yard: Yard, client: TestClient) -> None:
    sha = yard.deploy()
    api = f"/api/v1/workspaces/{WS}"
    assert "no workspace" in error(client.get("/api/v1/workspaces/nope"), 404, "not_found")
    assert "/docs" in error(client.get("/api/v1/nothing-here"), 404, "not_found")
    error(client.put("/api/v1/me"), 405, "method_not_allowed")
    error(client.post(f"{api}/trigger", json={"selectors": []}), 400, "validation_error")
    error(client.post(f"{api}/trigger", json={"selectors": ["nope"]}), 404, "not_found")
    error(client.get("/api/v1/me", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    with yard.ctl.db.session() as session:
        reader, _ = auth.create(session, "reader", "read", None)
    as_reader = {"Authorization": f"Bearer {reader}"}
    error(client.post(f"{api}/reconcile", headers=as_reader), 403, "forbidden")
    missing = "0" * 40
    error(client.get(f"{api}/reconciliations/{missing}"), 404, "not_reconciled")
    run_id = yard.trigger()
    yard.move(run_id, "completed")
    error(client.post(f"/api/v1/runs/{run_id}/cancel"), 409, "conflict")
    big = {"selectors": ["x" * (yard.ctl.settings.max_api_bytes + 1)]}
    error(client.post(f"{api}/trigger", json=big), 413, "too_large")
    assert sha


def test_a_failed_reconcile_is_its_own_code(yard: Yard, client: TestClient) -> None:
    sha = yard.committer.commit({gitstore.MANIFEST: b"not: [valid"})
    with pytest.raises(DockyardError):  # recorded on the workspace, for a waiting deploy
        yard.ctl.reconciler.reconcile(WS)
    found = error(
        client.get(f"/api/v1/workspaces/{WS}/reconciliations/{sha}"), 404, "reconcile_failed"
    )
    assert found.startswith(sha[:12])


def test_a_rollback_answer_is_declared(yard: Yard, client: TestClient) -> None:
    first = yard.deploy()
    second = yard.deploy(b"x = 2\n")
    api = f"/api/v1/workspaces/{WS}"
    body = {"force": False}
    done = answer(
        client, "POST", f"{api}/deployments/{first[:8]}/rollback", M.RollbackResult, json=body
    )
    assert done["status"] == "rolled_back" and done["undone"] == [second], done
    again = answer(client, "POST", f"{api}/deployments/{first}/rollback", M.RollbackResult)
    assert again["status"] == "unchanged" and again["commit"] is None, again
