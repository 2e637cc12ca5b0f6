"""A pull request's plan, as a user meets it: a real server process linked with the real CLI
to a repository on a loopback git host ("GitHub", `tests/githost.py`), deployed from its
`main` by a signed push delivery; a pull request's head pushed only to `refs/pull/7/head`
(as GitHub keeps a fork's commits) changes a schedule and adds a job; GitHub's published
`pull_request` example, pointed at it and signed, gets the plan as its outcome (`workspace
info -o json`), and the workspace's version and jobs do not move. A pull request whose
manifest raises a NameError at import fails with file:line, as `deploy --dry-run` does."""

from pathlib import Path
from typing import Any

import httpx

from tests import github_examples as gh
from tests.conftest import WORKSPACES, Cli, make_server
from tests.e2e.test_github_crash import GH_TOKEN, REPO, link, processed
from tests.githost import GitHost, git

WS = "gh-plan"
SCHEDULED = """

@run.job(trigger="schedule:30 7 * * *")
def nightly():
    print("nightly")
"""


def deliver(url: str, secret: str, event: str, payload: dict[str, Any], delivery: str) -> None:
    body, headers = gh.signed(secret, event, payload, delivery)
    answer = httpx.post(url, content=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text


def pull_request(number: int, head: str) -> dict[str, Any]:
    """GitHub's published `pull_request` (opened) example, for pull request `number` at
    `head` against `main`."""
    payload = gh.pull_request(REPO, "main", "opened")
    payload["number"] = number
    payload["pull_request"].update(number=number)
    payload["pull_request"]["head"]["sha"] = head
    return payload


def push_pull(host: GitHost, clone: Path, number: int, message: str, files: dict[str, str]) -> str:
    """Commit `files` on a topic branch and push it to `refs/pull/<number>/head` only."""
    git("checkout", "-q", "-B", f"pr-{number}", "main", cwd=clone)
    for name, text in files.items():
        (clone / name).write_text(text)
    git("add", "-A", cwd=clone)
    git("commit", "-q", "-m", message, cwd=clone)
    host.push(REPO, clone, f"HEAD:refs/pull/{number}/head")
    return git("rev-parse", "HEAD", cwd=clone)


def state(cli: Cli) -> tuple[Any, Any, Any]:
    info = cli.json("workspace", "info", "-w", WS)
    jobs = {j["job_ref"]: (j["status"], j["triggers"]) for j in cli.json("job", "list")}
    return info["deployment_version"], info["github"]["last_processed_head"], jobs


def test_a_pull_request_gets_its_plan_and_nothing_moves(cache_home: Path, tmp_path: Path) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", WS)
    clone = tmp_path / "clone"
    try:
        pushed = host.seed(REPO, WORKSPACES / "basic", clone)
        url, secret = link(cli, WS, host.api_url())
        deliver(url, secret, "push", gh.push(REPO, "main", pushed), "main-1")
        assert processed(cli, WS)["status"] == "done"
        before = state(cli)

        text = (clone / "__deployment__.py").read_text()
        text = text.replace(
            "@run.job\ndef fails", '@run.job(trigger="schedule:0 6 * * *")\ndef fails'
        ).replace('"tiny_api"]', '"tiny_api", "nightly"]')
        head = push_pull(host, clone, 7, "schedule", {"__deployment__.py": text + SCHEDULED})
        deliver(url, secret, "pull_request", pull_request(7, head), "pr-7")

        last = processed(cli, WS)
        assert (last["delivery_id"], last["status"]) == ("pr-7", "done"), last
        assert last["outcome"].startswith(
            f"plan for #7 at {head[:12]}: 1 added, 1 updated; next runs "
        ), last
        assert "fails " in last["outcome"] and "nightly " in last["outcome"], last
        assert " 06:00 UTC" in last["outcome"] and " 07:30 UTC" in last["outcome"], last
        assert state(cli) == before  # the deployed version, the link's head, the jobs

        # a pull request whose manifest fails at import: failed, with file and line
        helper = "X = 1\nY = undefined_name\n"
        broken = {"helper.py": helper, "__deployment__.py": "import helper\n" + text}
        bad = push_pull(host, clone, 8, "broken", broken)
        deliver(url, secret, "pull_request", pull_request(8, bad), "pr-8")
        last = processed(cli, WS)
        why = "helper.py:2: NameError: name 'undefined_name' is not defined"
        assert (last["delivery_id"], last["status"]) == ("pr-8", "failed"), last
        assert last["outcome"] == (
            f"#8 {bad[:12]} cannot be deployed: generating the manifest failed: {why}"
        )
        assert state(cli) == before
        # the same commit, deployed from the laptop: the same line
        assert cli.fails("deploy", "--dry-run", cwd=clone) == (
            f"error: generating the manifest failed: {why}"
        )
    finally:
        server.stop()
        host.stop()
