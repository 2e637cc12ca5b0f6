"""GitHub App mode end to end: a real server process, linked with the real CLI through a
GitHub App whose key is made here, to a repository on a loopback git host, with the loopback
REST fake (tests/githubapi.py) as its GitHub on the same port — every request checked
against GitHub's OpenAPI description, every App JWT checked with the App's public key, and
the repository served only to installation tokens the fake minted.

Linking finds the installation; a push delivered to the App's one webhook URL gets a check
run in_progress then completed success with the summary; a bad commit gets a failure with
the reason while the old version keeps running; a pull request gets a check run and one
comment; a wrong App id or an App not installed on the repository is one line, nothing
stored."""

import re
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import github_examples as gh
from tests.conftest import WORKSPACES, Cli, make_server
from tests.e2e.test_github_crash import processed
from tests.e2e.test_github_feedback import commit, wait_for
from tests.githost import GitHost
from tests.githubapi import AppKey, serving

REPO = "acme/pipelines"
OTHER = "acme/other"
APP_ID = 31337
DEV_TOKEN = "dev_push_token_not_given_to_dockyard_0123"
WS = "gh-app"
NAME = f"dockyard/{WS}"


def write_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return key


def public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def field(out: str, label: str) -> str:
    found = re.search(rf"^\s+{label}\s+(\S+)$", out, re.MULTILINE)
    assert found, out
    return found.group(1)


def test_an_app_link_gets_check_runs_and_one_comment(cache_home: Path, tmp_path: Path) -> None:
    # the developer pushes to the git host's own port with their token; the server fetches
    # through the fake's port, which serves the same repositories to minted tokens only
    host = GitHost(tmp_path / "host", token=DEV_TOKEN).start()
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", WS)
    key_file = tmp_path / "app.pem"
    key = write_key(key_file)
    clone = tmp_path / "clone"
    installations = {REPO: 9001, OTHER: 9001}
    try:
        with serving(
            app=AppKey(APP_ID, public(key)), installations=installations, githost=host
        ) as github:
            good = host.seed(REPO, WORKSPACES / "basic", clone)
            api = github.api_url()
            for name in (WS, "gh-app-2"):
                cli.run("workspace", "create", name)
            link = [
                "workspace",
                "link-github",
                "--api-url",
                api,
                "--private-key-file",
                str(key_file),
            ]

            # bad inputs first: one line each, nothing stored
            wrong = cli.fails(*link, WS, "--repo", REPO, "--app-id", str(APP_ID + 1))
            assert "App ID shown on the App's settings page" in wrong, wrong
            absent = cli.fails(*link, WS, "--repo", "acme/elsewhere", "--app-id", str(APP_ID))
            assert "not installed on this repository" in absent, absent
            both = cli.fails(*link, WS, "--repo", REPO, "--app-id", "1", "--token-env", "X")
            assert "not both" in both
            assert cli.json("workspace", "info", "-w", WS)["github"] is None

            out = cli.run(*link, WS, "--repo", REPO, "--app-id", str(APP_ID)).stdout
            assert "installation 9001" in out and "PRIVATE KEY" not in out, out
            url, secret = field(out, "Webhook URL"), field(out, "Webhook secret")
            assert "/webhooks/github/app/" in url
            again = cli.run(*link, "gh-app-2", "--repo", OTHER, "--app-id", str(APP_ID)).stdout
            assert "already set up" in again and secret not in again and url in again, again
            assert github.minted, "linking proves the installation by minting a token"

            def deliver(event: str, payload: dict[str, object], delivery: str) -> None:
                body, headers = gh.signed(secret, event, payload, delivery)
                assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202

            # a push: a check run in progress, then completed success with the summary
            fetches = len(host.requests)
            deliver("push", gh.push(REPO, "main", good), "app-p-1")
            assert processed(cli, WS)["status"] == "done"
            done = [["in_progress", "completed"]]
            wait_for(lambda: [r["history"] for r in github.runs(good)] == done, "the check run")
            [run] = github.runs(good)
            assert run["name"] == NAME and run["conclusion"] == "success"
            assert run["output"]["title"].startswith("8 added"), run  # the plan's summary
            assert good[:12] in run["output"]["summary"]  # the details name what was deployed
            assert run["details_url"].startswith(f"{server.url}/ui/w/{WS}/deployments")
            assert any("git-upload-pack" in r for r in host.requests[fetches:])  # fetched
            refs = api.removesuffix("/api/v3") + f"/{REPO}.git/info/refs?service=git-upload-pack"
            assert httpx.get(refs).status_code == 401  # only with a minted installation token
            assert github.statuses == {}

            # a bad commit: failure with the reason; the good version keeps running
            secrets_file = clone / ".dlt" / "prod.secrets.toml"
            secrets_file.parent.mkdir(exist_ok=True)
            secrets_file.write_text('[sources.api]\nkey = "typed-in-by-hand"\n')
            bad = commit(host, clone, "oops")
            deliver("push", gh.push(REPO, "main", bad), "app-p-2")
            assert processed(cli, WS)["status"] == "failed"
            wait_for(lambda: [r.get("conclusion") for r in github.runs(bad)] == ["failure"], "red")
            [red] = github.runs(bad)
            assert "prod.secrets.toml" in red["output"]["title"]
            assert "typed-in-by-hand" not in str(red["output"])
            assert cli.json("workspace", "info", "-w", WS)["github"]["last_processed_head"] == good

            # a pull request: a check run on its head and exactly one comment
            payload = gh.pull_request(REPO, "main", "opened")
            payload["pull_request"]["head"]["sha"] = good
            number = payload["pull_request"]["number"]
            host.push(REPO, clone, f"{good}:refs/pull/{number}/head", force=True)
            deliver("pull_request", payload, "app-pr-1")
            assert processed(cli, WS)["status"] == "done"
            wait_for(lambda: len(github.comments.get(number, [])) == 1, "the comment")
            wait_for(lambda: len(github.runs(good)) == 2, "the plan's check run")
            plan = github.runs(good)[1]
            assert plan["history"] == ["in_progress", "completed"] and plan["name"] == NAME
            assert github.comments[number][0]["body"].startswith(f"<!-- dockyard:plan:{WS} -->")
            assert plan["conclusion"] == "success" and good[:12] in plan["output"]["summary"]
            assert "PRIVATE KEY" not in server.log.read_text()
        # leaving `serving` asserted that GitHub's description accepted every request
    finally:
        server.stop()
        host.stop()
