"""`events.classify`: what a verified delivery asks for (pure)."""

from typing import Any

from dockyard.webhooks import processing
from dockyard.webhooks.events import Target, classify

T = Target("acme/pipelines", "main")
A, B = "a" * 40, "b" * 40
ZERO = "0" * 40


def repo(name: str = "acme/pipelines", **fields: Any) -> dict[str, Any]:
    return {"repository": {"full_name": name}, **fields}


def push(ref: str = "refs/heads/main", after: str = B, **fields: Any) -> dict[str, Any]:
    return repo(**{"ref": ref, "before": A, "after": after, "deleted": False, **fields})


def pr(action: str, base: str = "main", head: str | None = B) -> dict[str, Any]:
    return repo(
        action=action,
        pull_request={"number": 7, "head": {"sha": head}, "base": {"ref": base}},
    )


def test_a_push_to_the_linked_branch_deploys_its_head() -> None:
    got = classify("push", push(), T)
    assert (got.kind, got.status, got.head_sha, got.ref) == ("deploy", "received", B, push()["ref"])
    assert (got.before_sha, got.after_sha, got.reason) == (A, B, None)


def test_repository_names_compare_without_case() -> None:
    assert classify("push", push() | repo("ACME/Pipelines"), T).kind == "deploy"


def test_pushes_that_change_nothing_are_ignored_with_their_reason() -> None:
    cases = {
        "tag push (refs/tags/v1)": push("refs/tags/v1"),
        "push to refs/heads/dev; the linked branch is main": push("refs/heads/dev"),
        "branch deletion (refs/heads/main)": push(after=ZERO, deleted=True),
        "branch deletion (refs/heads/dev)": push("refs/heads/dev", after=ZERO),
        "not acme/pipelines": push() | repo("someone/else"),
    }
    for reason, payload in cases.items():
        got = classify("push", payload, T)
        assert (got.kind, got.status) == ("none", "ignored"), reason
        assert got.reason is not None and reason in got.reason


def test_pull_requests_plan_only_when_opened_synchronized_or_reopened() -> None:
    for action in ("opened", "synchronize", "reopened"):
        got = classify("pull_request", pr(action), T)
        assert (got.kind, got.status, got.head_sha) == ("plan", "received", B)
        assert (got.ref, got.action) == ("refs/pull/7/head", action)
    for payload in (pr("closed"), pr("labeled"), pr("opened", base="dev"), pr("opened", head="x")):
        got = classify("pull_request", payload, T)
        assert (got.kind, got.status) == ("none", "ignored")
        assert got.reason


def test_ping_is_done_and_other_events_are_ignored() -> None:
    ping = classify("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}, T)
    assert (ping.kind, ping.status, ping.reason) == (
        "ping",
        "done",
        "ping: Keep it logically awesome.",
    )
    issues = classify("issues", repo(action="opened"), T)
    assert (issues.status, issues.reason) == ("ignored", "'issues' events are not used")


def test_hostile_shapes_are_ignored_not_crashed_on() -> None:
    hostile: list[Any] = [[], "x", 3, None, {"repository": "acme/pipelines"}, repo(ref=["x"])]
    for payload in hostile:
        assert classify("push", payload, T).status == "ignored"
    long = classify("push", push("refs/heads/" + "x" * 10_000), T)
    assert long.ref is not None and len(long.ref) == 255
    assert classify("push", push(after="B" * 40), T).status == "ignored"  # not a lowercase SHA


def test_a_plan_finds_its_pull_request_from_the_stored_ref() -> None:
    sha = "b" * 40
    found = processing.pull_request("refs/pull/12/head", sha)
    assert found == processing.PullRequest(12, sha)
    assert found is not None and found.ref == "refs/pull/12/head"
    for ref, head in (("refs/heads/main", sha), ("refs/pull/x/head", sha), (None, sha)):
        assert processing.pull_request(ref, head) is None
    assert processing.pull_request("refs/pull/12/head", None) is None
