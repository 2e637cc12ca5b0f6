"""dockyard's GitHub REST client and its feedback (commit statuses, the one plan comment)
against the loopback fake (tests/githubapi.py), which checks every request against GitHub's
published OpenAPI description; each test ends asserting the fake saw no violation."""

import threading
from collections.abc import Iterator

import httpx
import pytest

from dockyard.controller import github_api
from dockyard.controller.github_api import GitHubApi, GitHubError, TokenAuth
from dockyard.webhooks.feedback import MARKER, StatusFeedback
from dockyard.webhooks.processing import LinkTarget, Outcome, PullRequest, Work
from tests import githubapi
from tests.githubapi import serving

REPO = "acme/pipelines"
TOKEN = "ghp_fake_api_token_0123456789"
A, B, C = "a" * 40, "b" * 40, "c" * 40
STATUSES = "POST /repos/{owner}/{repo}/statuses/{sha}"


@pytest.fixture
def fake() -> Iterator[githubapi.GitHubApi]:
    with serving(token=TOKEN) as running:
        yield running


def client(fake: githubapi.GitHubApi, timeout: float = github_api.TIMEOUT_S) -> GitHubApi:
    return GitHubApi(fake.api_url(), REPO, TokenAuth(TOKEN), timeout=timeout)


def target(fake: githubapi.GitHubApi, ws: str = "ws1") -> LinkTarget:
    return LinkTarget(ws, REPO, "main", "", fake.api_url(), "token", lambda: TOKEN, None, 1)


def test_a_status_is_posted_as_the_description_says(fake: githubapi.GitHubApi) -> None:
    client(fake).create_status(A, "success", "dockyard/ws1", "x" * 300, "http://d/deployments/1")
    [status] = fake.statuses[A]
    assert (status["state"], status["context"]) == ("success", "dockyard/ws1")
    assert status["target_url"] == "http://d/deployments/1"
    assert len(status["description"]) == 140 and status["description"].endswith("…")


def test_the_spec_check_bites(fake: githubapi.GitHubApi) -> None:
    """Requests GitHub's description rejects are refused and recorded, then cleared here so
    the fixture's own check stays meaningful for the other tests."""
    with pytest.raises(GitHubError, match="answered 422") as bad_state:
        client(fake).create_status(A, "bogus", "dockyard/ws1", "x", None)
    assert "'bogus' is not one of" in str(bad_state.value)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = fake.api_url()
    wrong = [
        httpx.post(f"{base}/repos/{REPO}/statuses/{A}", json={"context": "x"}, headers=headers),
        httpx.get(f"{base}/repos/{REPO}/issues/7/comments?perpage=5", headers=headers),
        httpx.post(f"{base}/repos/{REPO}/hooks", json={"config": {"url": 1}}, headers=headers),
        httpx.post(f"{base}/repos/{REPO}/no-such-thing", json={}, headers=headers),
    ]
    assert [r.status_code for r in wrong] == [422, 422, 422, 404]
    seen = "\n".join(fake.violations)
    assert "'state' is a required property" in seen
    assert "query parameter 'perpage' is not declared" in seen
    assert "body['config']['url']" in seen
    assert "no such operation" in seen
    assert fake.statuses == {} and fake.hooks == []
    fake.violations.clear()


def test_comments_are_listed_created_and_edited(fake: githubapi.GitHubApi) -> None:
    api = client(fake)
    made = api.create_comment(7, "first")
    assert [c.body for c in api.comments(7)] == ["first"]
    edited = api.edit_comment(made.id, "second")
    assert (edited.id, edited.body) == (made.id, "second")
    assert [(c["body"], c["edits"]) for c in fake.comments[7]] == [("second", 1)]
    assert list(api.comments(8)) == []


def test_a_webhook_is_created_for_push_and_pull_request_and_deleted(
    fake: githubapi.GitHubApi,
) -> None:
    api = client(fake)
    hook_id = api.create_hook(
        "https://dock.example/webhooks/github/abc", "s3cr3t", ("push", "pull_request")
    )
    [hook] = fake.hooks
    assert hook["id"] == hook_id and hook["events"] == ["push", "pull_request"]
    assert hook["config"]["url"] == "https://dock.example/webhooks/github/abc"
    assert (hook["config"]["secret"], hook["config"]["content_type"]) == ("s3cr3t", "json")
    api.delete_hook(hook_id)
    assert fake.hooks == []


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (403, "give it `Commit statuses: write`"),
        (404, "cannot see the repository"),
        (500, "GitHub failed on its side"),
    ],
)
def test_errors_are_one_line_with_the_status_and_the_fix(
    fake: githubapi.GitHubApi, status: int, says: str
) -> None:
    fake.refuse[STATUSES] = status
    with pytest.raises(GitHubError) as caught:
        client(fake).create_status(A, "pending", "dockyard/ws1", "x", None)
    message = str(caught.value)
    assert f"answered {status}" in message and says in message and "\n" not in message
    assert TOKEN not in message


def test_a_wrong_token_a_host_down_a_huge_or_a_hung_answer_fail_in_one_line(
    fake: githubapi.GitHubApi,
) -> None:
    with pytest.raises(GitHubError, match=r"answered 401 .*link again"):
        GitHubApi(fake.api_url(), REPO, TokenAuth("wrong")).create_status(
            A, "pending", "c", "x", None
        )
    fake.padding = 2 * github_api.MAX_ANSWER_BYTES
    with pytest.raises(GitHubError, match="the answer is over"):
        client(fake).create_status(A, "pending", "c", "x", None)
    fake.padding = 0
    fake.stall = threading.Event()
    try:
        with pytest.raises(GitHubError, match="Timeout"):
            client(fake, timeout=0.2).create_status(A, "pending", "c", "x", None)
    finally:
        fake.stall.set()
    fake.stall = None
    fake.down = True
    with pytest.raises(GitHubError, match=r"POST http://127\.0\.0\.1:\d+/api/v3/repos"):
        client(fake).create_status(A, "pending", "c", "x", None)


def test_a_deploy_gets_pending_then_success_and_superseded_commits_a_final_state(
    fake: githubapi.GitHubApi,
) -> None:
    feedback = StatusFeedback()
    link, work = target(fake), Work("deploy", (A, B, A))
    feedback.begin(link, work)
    assert (fake.states(A), fake.states(B)) == (["pending"], ["pending"])
    url = "http://dock/workspaces/ws1/deployments/9c41"
    feedback.end(link, work, Outcome(True, "deployed", C, summary="2 added", url=url))
    assert fake.states(C) == ["success"]
    last = fake.last_status(C) or {}
    assert (last["description"], last["target_url"]) == ("2 added", url)
    for sha in (A, B):  # named by a delivery, superseded by the head fetched then
        assert fake.states(sha) == ["pending", "success"]
        assert "superseded: cccccccccccc" in str(fake.last_status(sha))


def test_a_failed_deploy_marks_every_named_commit_failed_with_the_reason(
    fake: githubapi.GitHubApi,
) -> None:
    feedback, link, work = StatusFeedback(), target(fake), Work("deploy", (A, B))
    feedback.begin(link, work)
    reason = ".dlt/prod.secrets.toml: sources.api.key is in clear text; " + "y" * 200
    feedback.end(link, work, Outcome(False, reason))
    for sha in (A, B):
        assert fake.states(sha, "dockyard/ws1") == ["pending", "failure"]
        last = fake.last_status(sha) or {}
        assert last["description"].startswith(".dlt/prod.secrets.toml: sources.api.key")
        assert len(last["description"]) == 140 and last["description"].endswith("…")


def test_a_plan_keeps_one_comment_per_workspace_edited_in_place(
    fake: githubapi.GitHubApi,
) -> None:
    feedback = StatusFeedback()
    client(fake).create_comment(5, f"a reviewer quoting {MARKER.format(workspace='ws1')}")
    for sha, text in ((A, "plan one"), (B, "plan two")):
        work = Work("plan", (sha,), PullRequest(5, sha))
        feedback.begin(target(fake), work)
        feedback.end(target(fake), work, Outcome(True, "planned", sha, details=text))
        assert fake.states(sha) == ["pending", "success"]
    other = Work("plan", (B,), PullRequest(5, B))
    feedback.end(target(fake, "ws2"), other, Outcome(False, "no manifest"))
    bodies = [(c["body"], c["edits"]) for c in fake.comments[5]]
    assert len(bodies) == 3  # the reviewer's, one for ws1 (edited once), one for ws2
    assert bodies[1][0].startswith(MARKER.format(workspace="ws1")) and bodies[1][1] == 1
    assert "plan two" in bodies[1][0] and "bbbbbbbbbbbb" in bodies[1][0]
    assert bodies[2][0].startswith(MARKER.format(workspace="ws2")) and "no manifest" in bodies[2][0]
    assert fake.states(B, "dockyard/ws2") == ["failure"]


def test_feedback_tries_every_call_and_raises_one_line(fake: githubapi.GitHubApi) -> None:
    fake.refuse[STATUSES] = 403
    work = Work("plan", (A,), PullRequest(3, A))
    with pytest.raises(GitHubError, match="Commit statuses: write"):
        StatusFeedback().end(target(fake), work, Outcome(True, "planned", A, details="p"))
    assert len(fake.comments[3]) == 1  # the comment was still written
