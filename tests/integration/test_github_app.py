"""GitHub App mode against the loopback fake GitHub (tests/githubapi.py), which checks every
request against GitHub's published OpenAPI description and the App's JWTs with the App's
public key: finding the installation, installation tokens and their cache, check runs,
linking through the API (the App stored once), the App's one webhook routed by repository,
and redelivery of failed deliveries. An RSA key made here is the App's key."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from dockyard.clock import FakeClock
from dockyard.controller import github_app
from dockyard.controller.github_api import GitHubError
from dockyard.controller.store.models import GithubApp, GithubDelivery, GithubLink
from dockyard.controller.usecases import workspaces
from dockyard.web.asgi import create_asgi
from dockyard.webhooks import redelivery
from dockyard.webhooks.feedback import StatusFeedback
from dockyard.webhooks.processing import LinkTarget, Outcome, PullRequest, Work
from tests import dbread, githubapi
from tests import github_examples as gh
from tests.githubapi import AppKey, serving
from tests.integration.deployed import ADMIN, TOKEN, WS, Yard, make_yard

REPO = "acme/pipelines"
OTHER = "acme/other"
APP_ID = 4242
INSTALLATION = 77
A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def fake(key: rsa.RSAPrivateKey) -> Iterator[githubapi.GitHubApi]:
    installations = {REPO: INSTALLATION, OTHER: INSTALLATION}
    with serving(app=AppKey(APP_ID, public(key)), installations=installations) as running:
        yield running


def app(fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, app_id: int = APP_ID) -> github_app.App:
    return github_app.App(app_id, fake.api_url(), pem(key))


def now() -> datetime:
    return datetime.now(UTC)


# the App's JWT and its installation ---------------------------------------------------


def test_the_installation_is_found_with_a_jwt_github_accepts(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey
) -> None:
    before = int(now().timestamp())
    assert github_app.find_installation(app(fake, key), REPO, FakeClock(now())) == INSTALLATION
    [claims] = fake.jwts
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] <= before - 59 and claims["exp"] - claims["iat"] <= 600


def test_a_wrong_app_id_or_an_app_not_installed_says_the_fix(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock(now())
    with pytest.raises(GitHubError, match="answered 401") as wrong:
        github_app.find_installation(app(fake, key, APP_ID + 1), REPO, clock)
    assert "App ID shown on the App's settings page" in wrong.value.message
    with pytest.raises(GitHubError, match="answered 404") as absent:
        github_app.find_installation(app(fake, key), "acme/elsewhere", clock)
    assert "not installed on this repository" in absent.value.message
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(GitHubError, match="answered 401"):
        github_app.find_installation(app(fake, other), REPO, clock)
    assert len(fake.jwts) == 1  # only the App's own key and id passed the check


def test_installation_tokens_are_reused_until_close_to_expiry(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(githubapi, "TOKEN_LIFETIME_S", github_app.REFRESH_S + 20)
    clock = FakeClock(now())
    tokens = github_app.InstallationTokens(clock)
    first = tokens.token(app(fake, key), INSTALLATION, REPO)
    clock.advance(10)
    assert tokens.token(app(fake, key), INSTALLATION, REPO) == first
    assert tokens.minted == 1
    clock.advance(15)  # now within REFRESH_S of its expiry: a new one
    second = tokens.token(app(fake, key), INSTALLATION, REPO)
    assert second != first and tokens.minted == 2
    assert fake.token_ok(second, REPO.lower()) and not fake.token_ok(second, OTHER.lower())
    assert tokens.token(app(fake, key), INSTALLATION, OTHER) not in (first, second)


def test_a_token_github_did_not_mint_is_refused(fake: githubapi.GitHubApi) -> None:
    feedback = StatusFeedback()
    target = LinkTarget("ws1", REPO, "main", "", fake.api_url(), "app", lambda: "ghs_x", None, 1)
    with pytest.raises(GitHubError, match="answered 401"):
        feedback.begin(target, Work("deploy", (A,)))


# check runs ---------------------------------------------------------------------------


def app_target(fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, ws: str = "ws1") -> LinkTarget:
    tokens = github_app.InstallationTokens(FakeClock(now()))
    the_app = app(fake, key)
    return LinkTarget(
        ws, REPO, "main", "", fake.api_url(), "app",
        lambda: tokens.token(the_app, INSTALLATION, REPO), None, 1,
    )  # fmt: skip


def test_a_deploy_gets_check_runs_in_progress_then_completed(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey
) -> None:
    feedback, target = StatusFeedback(base_url="http://dy"), app_target(fake, key)
    work = Work("deploy", (A, B))
    feedback.begin(target, work)
    assert [(r["status"], r["name"]) for r in fake.runs(A)] == [("in_progress", "dockyard/ws1")]
    details = "### plan\n\n" + "x" * 70_000
    outcome = Outcome(True, "deployed", B, "1 added", details, "http://dy/ui/w/ws1/d/1")
    feedback.end(target, work, outcome)
    [older], [head] = fake.runs(A), fake.runs(B)
    assert head["history"] == ["in_progress", "completed"] and head["conclusion"] == "success"
    assert head["output"]["title"] == "1 added" and head["details_url"].endswith("/d/1")
    summary = head["output"]["summary"]
    assert len(summary) == 65535 and summary.startswith("### plan") and "(cut:" in summary
    assert older["conclusion"] == "neutral" and "superseded" in older["output"]["title"]
    assert fake.statuses == {}


def test_a_failure_names_the_reason_and_an_end_without_begin_creates_it_completed(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey
) -> None:
    feedback, target = StatusFeedback(), app_target(fake, key)
    reason = "code/pipeline.py:3: NameError: name 'oops' is not defined"
    feedback.end(target, Work("deploy", (C,)), Outcome(False, reason))
    [run] = fake.runs(C)
    assert run["history"] == ["completed"] and run["conclusion"] == "failure"
    assert run["output"]["title"] == reason and reason in run["output"]["summary"]


def test_a_plan_gets_a_check_run_and_one_comment(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey
) -> None:
    feedback, target = StatusFeedback(), app_target(fake, key)
    for n, head in enumerate((A, B)):
        work = Work("plan", (head,), PullRequest(7, head))
        feedback.begin(target, work)
        feedback.end(target, work, Outcome(True, "planned", head, f"plan {n}", f"**plan {n}**"))
    assert [r["conclusion"] for r in fake.runs(A) + fake.runs(B)] == ["success", "success"]
    [comment] = fake.comments[7]
    assert comment["edits"] == 1 and "**plan 1**" in comment["body"]


# redelivery ---------------------------------------------------------------------------


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url)


def store_delivery(yard: Yard, guid: str) -> None:
    with yard.ctl.db.session() as session:
        ws_id = session.query(GithubLink).first()
        session.add(
            GithubDelivery(
                workspace_id=ws_id.workspace_id if ws_id else 1, link_id=1, delivery_id=guid,
                event="push", kind="deploy", received_at=now(), status="done", attempts=1,
            )
        )  # fmt: skip


def test_failed_deliveries_not_stored_are_asked_again_once(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, yard: Yard
) -> None:
    fake.log_delivery("stale", 500, now() - timedelta(hours=2))  # before the window
    wanted = fake.log_delivery("lost", 503)
    fake.log_delivery("stored", 500)
    store_delivery(yard, "stored")
    fake.log_delivery("healed", 500)
    fake.log_delivery("healed", 202)  # a later attempt got through
    fake.log_delivery("twice", 0)
    newest = fake.log_delivery("twice", 502)
    fake.log_delivery("fine", 202)
    api = github_app.app_api(app(fake, key), yard.clock)
    done = redelivery.redeliver(api, yard.ctl.db, APP_ID, now())
    assert sorted(done.asked) == ["lost", "twice"]
    assert sorted(fake.attempts) == sorted([wanted, newest])
    again = redelivery.redeliver(api, yard.ctl.db, APP_ID, now())  # the attempts succeeded
    assert again.asked == () and len(fake.attempts) == 2


def test_redelivery_is_bounded_per_pass_and_pages_through_the_log(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, yard: Yard
) -> None:
    for n in range(150):
        fake.log_delivery(f"g-{n}", 500)
    fake.redelivery_code = 500  # dockyard is still down
    api = github_app.app_api(app(fake, key), yard.clock)
    first = redelivery.redeliver(api, yard.ctl.db, APP_ID, now())
    assert len(first.asked) == redelivery.MAX_PER_PASS and first.seen == 150
    assert first.asked[0] == "g-149"  # newest first
    assert fake.requests.count("GET /app/hook/deliveries") == 2  # two pages of 100
    second = redelivery.redeliver(api, yard.ctl.db, APP_ID, now())
    assert len(second.asked) == redelivery.MAX_PER_PASS
    assert set(first.asked) == set(second.asked)  # still failed: asked again, never more


# linking and the App's webhook, in-process ----------------------------------------------


@pytest.fixture
def client(yard: Yard) -> TestClient:
    return TestClient(
        create_asgi(yard.ctl.settings, yard.ctl), headers={"Authorization": f"Bearer {TOKEN}"}
    )


def link(client: TestClient, ws: str, repo: str, fake: githubapi.GitHubApi, key_pem: bytes,
         app_id: int = APP_ID) -> Any:  # fmt: skip
    body = {"repo": repo, "api_url": fake.api_url(), "app_id": app_id,
            "private_key": key_pem.decode()}  # fmt: skip
    return client.post(f"/api/v1/workspaces/{ws}/github", json=body)


def test_the_app_is_stored_once_and_its_webhook_routes_by_repository(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, yard: Yard, client: TestClient
) -> None:
    for name in ("second", "third"):
        workspaces.create_workspace(yard.ctl, ADMIN, name)
    first = link(client, WS, REPO, fake, pem(key))
    assert first.status_code == 201, first.text
    made = first.json()
    assert made["credential_kind"] == "app" and made["app_created"] is True
    assert made["installation_id"] == INSTALLATION and made["webhook_secret"]
    url, secret = urlsplit(made["app_webhook_url"]).path, made["webhook_secret"]
    again = [
        link(client, "second", REPO, fake, pem(key)),
        link(client, "third", OTHER, fake, pem(key)),
    ]
    assert [a.json()["app_created"] for a in again] == [False, False]
    assert {a.json()["app_webhook_url"] for a in again} == {made["app_webhook_url"]}
    assert [a.json()["webhook_secret"] for a in again] == [None, None]
    with yard.ctl.db.session() as session:
        assert session.query(GithubApp).count() == 1
    dump = dbread.dump(yard.ctl.settings.database_url)
    assert secret not in dump and "PRIVATE KEY" not in dump

    def deliver(event: str, payload: dict[str, Any], delivery: str, sign: str = secret) -> Any:
        body, headers = gh.signed(sign, event, payload, delivery)
        return client.post(url, content=body, headers=headers)

    pushed = deliver("push", gh.push(REPO, "main", A), "d-1")
    assert pushed.status_code == 202 and len(pushed.json()["links"]) == 2
    assert deliver("push", gh.push(REPO, "main", A), "d-1").status_code == 200  # a replay
    assert deliver("push", gh.push(OTHER, "main", A), "d-2", "wrong").status_code == 401
    other = deliver("push", gh.push(OTHER, "main", B), "d-3").json()
    assert [s["kind"] for s in other["links"]] == ["deploy"]
    nobody = deliver("push", gh.push("acme/unlinked", "main", B), "d-4")
    assert nobody.status_code == 202 and "no link of this App" in nobody.json()["outcome"]
    installed = gh.example("installation_repositories")
    assert deliver("installation_repositories", installed, "d-5").status_code == 202
    ping = gh.example("ping", {"hook.type": "Organization"})  # no repository, as an App's
    assert deliver("ping", ping, "d-6").status_code == 202
    with yard.ctl.db.session() as session:
        stored = [(r.delivery_id, r.workspace_id, r.status)
                  for r in session.query(GithubDelivery).order_by(GithubDelivery.id)]  # fmt: skip
    assert [d for d, _, _ in stored] == ["d-1", "d-1", "d-3", "d-5", "d-5", "d-5", "d-6",
                                         "d-6", "d-6"]  # fmt: skip
    assert {s for d, _, s in stored if d in ("d-5", "d-6")} == {"done"}
    assert client.post("/webhooks/github/app/" + "x" * 32, content=b"{}").status_code == 404
    gone = client.delete(f"/api/v1/workspaces/{WS}/github").json()
    assert gone["credential_kind"] == "app" and gone["webhook_deleted"] is False
    assert "belongs to the App" in gone["webhook_reason"]
    with yard.ctl.db.session() as session:  # the App stays for its other links
        assert session.query(GithubApp).count() == 1
    assert len(deliver("push", gh.push(REPO, "main", C), "d-7").json()["links"]) == 1


def test_bad_app_links_say_the_fix_and_store_nothing(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, yard: Yard, client: TestClient
) -> None:
    cases = [
        (link(client, WS, REPO, fake, b"not a key"), "not a PEM private key"),
        (link(client, WS, REPO, fake, pem(key), APP_ID + 1), "App ID shown on the App's"),
        (link(client, WS, "acme/elsewhere", fake, pem(key)), "not installed on this repository"),
    ]
    for answer, fix in cases:
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]
        assert fix in message and "\n" not in message, message
    with yard.ctl.db.session() as session:
        assert session.query(GithubApp).count() == 0 and session.query(GithubLink).count() == 0


def test_the_one_resolver_gives_each_link_its_token_and_says_when_the_app_is_gone(
    fake: githubapi.GitHubApi, key: rsa.RSAPrivateKey, yard: Yard, client: TestClient
) -> None:
    workspaces.create_workspace(yard.ctl, ADMIN, "by-token")
    assert link(client, WS, REPO, fake, pem(key)).status_code == 201
    body = {"repo": OTHER, "api_url": fake.api_url(), "token": "ghp_plain_token_0123"}
    assert client.post("/api/v1/workspaces/by-token/github", json=body).status_code == 201
    with yard.ctl.db.session() as session:
        ids = {row.credential_kind: row.id for row in session.query(GithubLink)}
    credentials = yard.ctl.github_credentials
    assert credentials.token(ids["token"]) == "ghp_plain_token_0123"
    minted = credentials.token(ids["app"])
    assert fake.token_ok(minted, REPO.lower()) and credentials.token(ids["app"]) == minted
    fake.installations.clear()  # the App is uninstalled on GitHub
    credentials.tokens.forget(app(fake, key))
    with pytest.raises(GitHubError, match="no longer installed there"):
        credentials.token(ids["app"])
