"""The GitHub webhook receiver and the link API, in-process on a real controller (real SQLite
file, real workspace repository), driven with GitHub's published example payloads
(tests/github_examples.py) signed with the link's secret. The processing loop is stepped by
hand, so each test sees exactly what one round does."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from dockyard.controller import auth
from dockyard.controller.store.models import GithubDelivery, GithubLink
from dockyard.web.asgi import create_asgi
from dockyard.webhooks.processing import LinkTarget, Outcome
from dockyard.webhooks.wiring import Webhooks
from tests import dbread
from tests import github_examples as gh
from tests.githost import GitHost
from tests.integration.deployed import TOKEN, WS, Yard, make_yard

REPO = "acme/pipelines"
BASIC = Path(__file__).parents[1] / "workspaces" / "basic"
GH_TOKEN = "ghp_test_token_that_must_never_show_0123456789"
HEAD = "c" * 40
Link = dict[str, Any]


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url, max_webhook_bytes=256 * 1024)


@pytest.fixture
def client(yard: Yard) -> TestClient:
    return TestClient(create_asgi(yard.ctl.settings, yard.ctl), headers=auth_header(TOKEN))


DEAD_API = "http://127.0.0.1:9"


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def linked(client: TestClient) -> dict[str, Any]:
    # a loopback API that refuses connections: feedback is tried and fails at once, and no
    # test here ever reaches the real GitHub with its fake token
    body = {"repo": REPO, "branch": "main", "path": "etl", "token": GH_TOKEN, "api_url": DEAD_API}
    answer = client.post(f"/api/v1/workspaces/{WS}/github", json=body)
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()
    return data


def hooks(client: TestClient) -> Webhooks:
    found: Webhooks = client.app.state.webhooks  # type: ignore[attr-defined]
    return found


def deliver(
    client: TestClient, link: dict[str, Any], event: str, payload: dict[str, Any], **kw: Any
) -> Any:
    secret = kw.pop("secret", link["webhook_secret"])
    body, headers = gh.signed(secret, event, payload, kw.pop("delivery", None))
    return client.post(urlsplit(link["webhook_url"]).path, content=body, headers=headers)


def rows(yard: Yard) -> list[GithubDelivery]:
    with yard.ctl.db.session() as session:
        return list(session.query(GithubDelivery).order_by(GithubDelivery.id))


def info(client: TestClient) -> dict[str, Any]:
    github: dict[str, Any] = client.get(f"/api/v1/workspaces/{WS}").json()["github"]
    return github


def test_ping_is_stored_done_and_shown(yard: Yard, client: TestClient, linked: Link) -> None:
    answer = deliver(client, linked, "ping", gh.retarget(gh.example("ping"), REPO))
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "done"
    [row] = rows(yard)
    assert (row.event, row.kind, row.status, row.repo) == ("ping", "ping", "done", REPO)
    assert info(client)["last_delivery"]["status"] == "done"


def test_a_push_is_stored_before_202_and_deployed_by_the_loop(
    yard: Yard, client: TestClient, tmp_path: Path
) -> None:
    """The whole slice on real parts: a repository on a loopback git host, a link to it, a
    signed push delivery, one processing round that fetches, builds and deploys the head."""
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    try:
        pushed = host.seed(REPO, BASIC, tmp_path / "clone")
        body = {"repo": REPO, "branch": "main", "token": GH_TOKEN, "api_url": host.api_url()}
        link = client.post(f"/api/v1/workspaces/{WS}/github", json=body).json()
        answer = deliver(client, link, "push", gh.push(REPO, "main", HEAD), delivery="d-1")
        assert answer.status_code == 202
        [row] = rows(yard)
        assert (row.delivery_id, row.kind, row.status, row.head_sha) == (
            "d-1",
            "deploy",
            "received",
            HEAD,
        )
        assert (row.ref, row.after_sha) == ("refs/heads/main", HEAD)

        hooks(client).processor.step()
        [row] = rows(yard)
        assert (row.status, row.attempts) == ("done", 1), row.outcome
        assert row.outcome is not None and row.outcome.startswith(f"deployed {pushed[:12]} as ")
        last = info(client)
        assert (last["last_delivery"]["delivery_id"], last["last_delivery"]["status"]) == (
            "d-1",
            "done",
        )
        assert last["last_processed_head"] == pushed
        jobs = client.get(f"/api/v1/workspaces/{WS}/jobs").json()
        assert "jobs.__deployment__.hello" in {j["job_ref"] for j in jobs}
        # the audit log: the link by the admin token, the deploy by GitHub
        events = client.get("/api/v1/audit", params={"workspace": WS}).json()["events"]
        deploy, made = events[0], events[1]
        assert (deploy["action"], deploy["actor"]["kind"]) == ("deploy", "github")
        assert deploy["detail"]["source"] == f"{REPO}@{pushed}"
        assert deploy["target"] == client.get(f"/api/v1/workspaces/{WS}").json()["reconciled_sha"]
        assert (made["action"], made["actor"]["kind"], made["target"]) == (
            "github.link",
            "token",
            REPO,
        )
        assert GH_TOKEN not in str(events)
    finally:
        host.stop()


def test_pushes_for_one_head_are_processed_once_with_the_head_fetched_then(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    calls: list[LinkTarget] = []

    def deploy_head(link: LinkTarget) -> Outcome:
        calls.append(link)
        return Outcome(True, f"deployed {HEAD[:12]}", HEAD)

    hooks(client).processor.deploy_head = deploy_head
    for n, after in enumerate((HEAD, HEAD, "b" * 40)):  # the older commit arrives last
        assert (
            deliver(
                client, linked, "push", gh.push(REPO, "main", after), delivery=f"p{n}"
            ).status_code
            == 202
        )
    hooks(client).processor.step()
    assert len(calls) == 1
    assert (calls[0].repo, calls[0].branch, calls[0].path) == (REPO, "main", "etl")
    assert calls[0].credential == GH_TOKEN and GH_TOKEN not in repr(calls[0])
    assert {(r.status, r.attempts) for r in rows(yard)} == {("done", 1)}
    assert rows(yard)[0].outcome == f"deployed {HEAD[:12]} (one processing for 3 deliveries)"
    assert info(client)["last_processed_head"] == HEAD
    hooks(client).processor.step()
    assert len(calls) == 1  # nothing left to do


def test_a_replayed_delivery_is_stored_once_and_answered_200(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    payload = gh.push(REPO, "main", HEAD)
    statuses = [
        deliver(client, linked, "push", payload, delivery="same").status_code for _ in range(4)
    ]
    assert statuses == [202, 200, 200, 200]
    hooks(client).processor.step()
    again = deliver(client, linked, "push", payload, delivery="same")
    assert again.status_code == 200 and again.json()["replay"] is True
    hooks(client).processor.step()
    [row] = rows(yard)
    assert row.attempts == 1


def test_unsigned_wrongly_signed_or_tampered_deliveries_store_nothing(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    url = urlsplit(linked["webhook_url"]).path
    body, headers = gh.signed(linked["webhook_secret"], "push", gh.push(REPO, "main", HEAD))
    tampered = body.replace(HEAD.encode(), b"d" * 40)
    missing = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    wrong = gh.signed("not-the-secret", "push", gh.push(REPO, "main", HEAD))
    for content, sent in ((tampered, headers), (body, missing), wrong):
        answer = client.post(url, content=content, headers=sent)
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "unauthorized"
        assert "X-Hub-Signature-256" in answer.json()["error"]
    unknown = client.post("/webhooks/github/" + "x" * 32, content=body, headers=headers)
    assert unknown.status_code == 404
    assert rows(yard) == []


def test_a_body_over_the_cap_is_refused_before_it_is_read(client: TestClient, linked: Link) -> None:
    payload = gh.push(REPO, "main", HEAD) | {"padding": "x" * 300 * 1024}
    answer = deliver(client, linked, "push", payload)
    assert answer.status_code == 413
    assert "DOCKYARD_MAX_WEBHOOK_BYTES" in answer.json()["error"]


def test_other_branches_tags_and_deletions_are_ignored_and_visible(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    other = gh.push(REPO, "feature", HEAD)
    tag = gh.retarget(gh.example("push", {"ref": "refs/tags/simple-tag", "deleted": False}), REPO)
    deletion = gh.retarget(gh.example("push", {"deleted": True}), REPO, ref="refs/heads/main")
    for n, payload in enumerate((other, tag, deletion)):
        answer = deliver(client, linked, "push", payload, delivery=f"i{n}")
        assert answer.status_code == 202 and answer.json()["status"] == "ignored"
    reasons = [r.outcome for r in rows(yard)]
    assert [r.status for r in rows(yard)] == ["ignored"] * 3
    assert "push to refs/heads/feature; the linked branch is main" in str(reasons[0])
    assert "tag push (refs/tags/simple-tag)" in str(reasons[1])
    assert "branch deletion (refs/heads/main)" in str(reasons[2])
    last = info(client)["last_delivery"]
    assert (last["delivery_id"], last["status"]) == ("i2", "ignored")
    assert "branch deletion" in last["outcome"]


def test_pull_requests_are_planned_per_head_or_ignored(
    yard: Yard, client: TestClient, tmp_path: Path
) -> None:
    """Three deliveries for one pull request head are one plan; its head is fetched from
    `refs/pull/<n>/head` of the linked repository (here it has none: the plan fails)."""
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    try:
        host.seed(REPO, BASIC, tmp_path / "clone")
        body = {"repo": REPO, "branch": "main", "token": GH_TOKEN, "api_url": host.api_url()}
        link = client.post(f"/api/v1/workspaces/{WS}/github", json=body).json()
        for action in ("opened", "synchronize", "reopened", "closed"):
            payload = gh.pull_request(REPO, "main", action)
            answer = deliver(client, link, "pull_request", payload)
            assert answer.status_code == 202
        hooks(client).processor.step()
    finally:
        host.stop()
    got = [(r.action, r.kind, r.status) for r in rows(yard)]
    assert got == [
        ("opened", "plan", "failed"),
        ("synchronize", "plan", "failed"),
        ("reopened", "plan", "failed"),
        ("closed", "none", "ignored"),
    ]
    number, head = payload["pull_request"]["number"], payload["pull_request"]["head"]["sha"]
    assert {r.outcome for r in rows(yard)[:3]} == {
        f"#{number} {head[:12]} cannot be deployed: {host.url(REPO)} has no pull request"
        f" #{number} (one processing for 3 deliveries)"
    }


def test_a_crash_while_processing_puts_the_delivery_back(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    deliver(client, linked, "push", gh.push(REPO, "main", HEAD))
    with yard.ctl.db.session() as session:  # what a crash between claim and finish leaves
        session.query(GithubDelivery).update({"status": "processing", "attempts": 1})
    hooks(client).processor.recover()
    hooks(client).processor.step()
    [row] = rows(yard)
    assert (row.status, row.attempts) == ("failed", 2)


def test_link_secrets_are_sealed_and_never_shown_again(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    secret = linked["webhook_secret"]
    assert len(secret) == 64 and "token" not in linked
    assert linked["webhook_url"].startswith("http://127.0.0.1:8765/webhooks/github/")
    shown = client.get(f"/api/v1/workspaces/{WS}").text
    assert secret not in shown and GH_TOKEN not in shown
    assert info(client)["repo"] == REPO and info(client)["path"] == "etl"
    dump = dbread.dump(yard.ctl.settings.database_url)
    assert secret not in dump and GH_TOKEN not in dump
    with yard.ctl.db.session() as session:  # what is stored opens with the master key only
        [link] = session.query(GithubLink).all()
        assert yard.ctl.keys.unseal(link.sealed_secret).decode() == secret
        assert link.sealed_credential is not None
        assert yard.ctl.keys.unseal(link.sealed_credential).decode() == GH_TOKEN


def test_linking_needs_admin_valid_fields_and_no_existing_link(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    api = f"/api/v1/workspaces/{WS}/github"
    body = {"repo": REPO, "token": GH_TOKEN}
    again = client.post(api, json=body)
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert "unlink-github" in again.json()["error"]
    with yard.ctl.db.session() as session:
        deployer, _ = auth.create(session, "ci", "deploy", None)
    refused = client.post(api, json=body, headers=auth_header(deployer))
    assert refused.status_code == 403
    for bad, word in (
        ({"repo": "no-slash"}, "--repo"),
        ({"branch": "a..b"}, "--branch"),
        ({"path": "../up"}, "--path"),
        ({"api_url": "http://example.com"}, "--api-url"),
        ({"token": "has space"}, "token"),
    ):
        client.delete(api)
        answer = client.post(api, json=body | bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert word in answer.json()["error"]


def test_unlink_keeps_history_and_retires_the_url(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    deliver(client, linked, "push", gh.push(REPO, "main", HEAD), delivery="before-unlink")
    gone = client.delete(f"/api/v1/workspaces/{WS}/github")
    assert gone.status_code == 200 and gone.json() == {
        "workspace": WS,
        "repo": REPO,
        "unlinked": True,
        "credential_kind": "token",
        "webhook_deleted": False,  # made by hand: dockyard leaves it alone
        "webhook_reason": "dockyard did not create it: delete it in the repository's settings",
    }
    [row] = rows(yard)
    assert (row.status, row.outcome) == ("ignored", "the workspace was unlinked")
    late = deliver(client, linked, "push", gh.push(REPO, "main", HEAD))
    assert late.status_code == 404
    assert client.get(f"/api/v1/workspaces/{WS}").json()["github"] is None
    assert client.delete(f"/api/v1/workspaces/{WS}/github").status_code == 404
    events = client.get("/api/v1/audit", params={"workspace": WS}).json()["events"]
    assert [e["action"] for e in events[:2]] == ["github.unlink", "github.link"]
    assert linked["webhook_secret"] not in str(events) and GH_TOKEN not in str(events)


def rotate(yard: Yard, secret: str) -> None:
    with yard.ctl.db.session() as session:
        session.query(GithubLink).one().sealed_secret = yard.ctl.keys.seal(secret.encode())


def test_a_remembered_secret_never_outlives_the_link_s_own(
    yard: Yard, client: TestClient, linked: Link
) -> None:
    """The receiver remembers a link's opened secret (webhooks/hooksecrets.py); when the
    link's stored secret changes, a delivery signed with the new one is accepted and one
    signed with the old, remembered one is refused, with nothing stored."""

    def send(delivery: str, secret: str) -> int:
        payload = gh.push(REPO, "main", HEAD)
        answer = deliver(client, linked, "push", payload, delivery=delivery, secret=secret)
        return int(answer.status_code)

    old, second, third = linked["webhook_secret"], "second-secret-0123456789", "third-secret-01"
    assert send("a", old) == 202  # `old` is remembered now
    rotate(yard, second)
    assert send("b", old) == 401  # verified by the remembered secret, refused at the store
    assert send("c", second) == 202  # nothing remembered: read again
    rotate(yard, third)
    assert send("d", third) == 202  # the remembered `second` fails: read again, it matches
    assert send("e", second) == 401
    assert [r.delivery_id for r in rows(yard)] == ["a", "c", "d"]
