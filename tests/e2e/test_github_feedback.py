"""What GitHub is told, end to end: a real server process, linked with the real CLI to a
repository on a loopback git host, with the loopback REST fake (tests/githubapi.py, every
request checked against GitHub's OpenAPI description) as its GitHub API on the same port.

`link-github` creates the webhook through the API; deliveries are signed with the secret
GitHub was given. A push gets pending then success on the deployed head, with a link; a bad
commit gets failure with the reason while the old version keeps running; a pull request
opened then synchronized keeps exactly one comment, edited; GitHub answering 500 or not
answering changes no delivery's outcome and is logged."""

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

from tests import github_examples as gh
from tests.conftest import WORKSPACES, Cli, make_server
from tests.e2e.test_github_crash import processed
from tests.githost import GitHost
from tests.githubapi import serving

REPO = "acme/pipelines"
GH_TOKEN = "ghp_feedback_token_never_shown_0123456789"
WS = "gh-feedback"
CONTEXT = f"dockyard/{WS}"
STATUSES = "POST /repos/{owner}/{repo}/statuses/{sha}"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def told(states: Callable[[str, str], list[str]], sha: str) -> bool:
    """After its push's two states, the commit's plan got pending then a final state."""
    found = states(sha, CONTEXT)
    return len(found) == 4 and found[2] == "pending" and found[3] in ("success", "failure")


def commit(host: GitHost, clone: Path, message: str) -> str:
    return host.commit_and_push(REPO, clone, message)


def test_statuses_and_one_comment_on_github(cache_home: Path, tmp_path: Path) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", WS)
    clone = tmp_path / "clone"
    try:
        with serving(token=GH_TOKEN, githost=host) as github:
            good = host.seed(REPO, WORKSPACES / "basic", clone)
            cli.run("workspace", "create", WS)
            out = cli.run(
                "workspace", "link-github", WS, "--repo", REPO, "--token-env", "GH_TOKEN",
                "--api-url", github.api_url(), env={"GH_TOKEN": GH_TOKEN},
            ).stdout  # fmt: skip
            assert "created the webhook on GitHub" in out and GH_TOKEN not in out, out
            [hook] = github.hooks
            assert hook["events"] == ["push", "pull_request"]
            url, secret = hook["config"]["url"], hook["config"]["secret"]
            assert secret not in out  # GitHub has it; nobody needs to paste it

            def deliver(event: str, payload: dict[str, object], delivery: str) -> None:
                body, headers = gh.signed(secret, event, payload, delivery)
                assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202

            # a push: pending, then success on the deployed head with the summary and a link
            deliver("push", gh.push(REPO, "main", good), "p-1")
            assert processed(cli, WS)["status"] == "done"
            wait_for(lambda: github.states(good, CONTEXT) == ["pending", "success"], "success")
            status = github.last_status(good) or {}
            assert status["description"].startswith("8 added"), status  # the plan's summary
            assert status["target_url"].startswith(f"{server.url}/ui/w/{WS}/deployments")

            # a bad commit: failure with the reason, the good version keeps running
            secrets_file = clone / ".dlt" / "prod.secrets.toml"
            secrets_file.parent.mkdir(exist_ok=True)
            secrets_file.write_text('[sources.api]\nkey = "typed-in-by-hand"\n')
            bad = commit(host, clone, "oops")
            deliver("push", gh.push(REPO, "main", bad), "p-2")
            assert processed(cli, WS)["status"] == "failed"
            wait_for(lambda: github.states(bad, CONTEXT) == ["pending", "failure"], "failure")
            reason = (github.last_status(bad) or {})["description"]
            assert "prod.secrets.toml" in reason and "typed-in-by-hand" not in reason, reason
            info = cli.json("workspace", "info", "-w", WS)["github"]
            assert info["last_processed_head"] == good

            # a pull request opened, then synchronized: one comment, edited in place
            for n, (action, head) in enumerate((("opened", good), ("synchronize", bad))):
                payload = gh.pull_request(REPO, "main", action)
                payload["pull_request"]["head"]["sha"] = head
                pull = f"refs/pull/{payload['pull_request']['number']}/head"
                host.push(REPO, clone, f"{head}:{pull}", force=True)
                deliver("pull_request", payload, f"pr-{n}")
                assert processed(cli, WS)["status"] in ("done", "failed")
                wait_for(partial(told, github.states, head), "the plan's status")
            number = payload["pull_request"]["number"]
            wait_for(lambda: [c["edits"] for c in github.comments.get(number, [])] == [1], "edit")
            [comment] = github.comments[number]
            assert comment["body"].startswith(f"<!-- dockyard:plan:{WS} -->")
            # the comment now holds the plan of the pull request's newest head: refused, why
            assert bad[:12] in comment["body"] and "prod.secrets.toml" in comment["body"]
            assert "typed-in-by-hand" not in comment["body"]

            # GitHub failing or down: the delivery's outcome is unchanged, the failure logged
            github.refuse[STATUSES] = 500
            secrets_file.unlink()
            fixed = commit(host, clone, "fixed")
            deliver("push", gh.push(REPO, "main", fixed), "p-3")
            last = processed(cli, WS)
            assert last["status"] == "done" and fixed[:12] in last["outcome"], last
            github.refuse.clear()
            github.down = True
            (clone / "notes.md").write_text("a change\n")
            newer = commit(host, clone, "notes")
            deliver("push", gh.push(REPO, "main", newer), "p-4")
            last = processed(cli, WS)
            assert last["status"] == "done", last
            wait_for(lambda: server.log.read_text().count("github feedback failed") >= 4, "logs")
            log = server.log.read_text()
            assert "answered 500" in log and GH_TOKEN not in log
            assert github.states(fixed) == [] and github.states(newer) == []
            assert cli.json("workspace", "info", "-w", WS)["github"]["last_processed_head"] == newer
        # leaving `serving` asserted that GitHub's description accepted every request
    finally:
        server.stop()
        host.stop()
