"""`dockyard deployment rollback SHA` against a real server: a new commit holding an earlier
deployment's files, reconciled like a deploy (jobs added, updated, archived back), its secrets
sealed again when the key rotated since, a run in flight left on its version; bad inputs each
refused in one line with nothing changed."""

import hashlib
import secrets
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests import github_examples as gh
from tests.conftest import WORKSPACES, Cli, copy_workspace, make_server, wait_run
from tests.e2e.test_github_crash import GH_TOKEN, REPO, link, processed
from tests.e2e.test_github_secrets import push
from tests.githost import GitHost, git

V1 = """
import hashlib, time
import dlt
from dlt.hub import run

@run.job(trigger="0 3 * * *")
def nightly():
    print("nightly")

@run.job
def use_secret():
    key = dlt.secrets["sources.api.key"]
    run.result({"sha256": hashlib.sha256(key.encode()).hexdigest()})

@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def napper():
    for i in range(6000):
        print(f"nap {i}", flush=True)
        time.sleep(0.1)

__all__ = ["nightly", "use_secret", "napper"]
"""
# v2: the schedule changed and a job added
V2 = V1.replace('trigger="0 3 * * *"', 'trigger="0 4 * * *"').replace(
    '__all__ = ["nightly"',
    '@run.job\ndef extra():\n    print("extra")\n\n__all__ = ["extra", "nightly"',
)


def write(ws: Path, code: str, secret: str) -> None:
    (ws / "__deployment__.py").write_text(code)
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{secret}"\n')


def jobs(cli: Cli) -> dict[str, tuple[str, list[str]]]:
    return {j["job_ref"]: (j["status"], j["triggers"]) for j in cli.json("job", "list")}


def state(cli: Cli) -> tuple[Any, Any, Any]:
    """What a refused rollback must leave as it was: versions and jobs."""
    return cli.json("deployment", "list"), cli.json("configuration", "list"), jobs(cli)


def repo_head(cli: Cli) -> str:
    repo = cli.server.data_dir / "repos" / f"{cli.workspace}.git"
    return subprocess.run(
        ["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def commits(cli: Cli) -> list[str]:
    repo = cli.server.data_dir / "repos" / f"{cli.workspace}.git"
    out = subprocess.run(
        ["git", "log", "--first-parent", "--format=%H %s", "main"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip().splitlines()


def test_rollback_restores_jobs_schedules_and_secrets(cli: Cli, tmp_path: Path) -> None:
    ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
    first, second = "v1-" + secrets.token_hex(8), "v2-" + secrets.token_hex(8)
    write(ws, V1, first)
    cli.run("deploy", cwd=ws)
    v1_jobs = jobs(cli)
    [v1] = [v["version"] for v in cli.json("deployment", "list")]
    write(ws, V2, second)
    cli.run("deploy", cwd=ws)
    assert jobs(cli)["jobs.__deployment__.extra"][0] != "archived"
    v2 = cli.json("deployment", "list")[0]["version"]

    # a run in flight on v2; then the key rotates, so v1's secrets are sealed for a retired key
    cli.run("launch", "napper")
    napping = wait_run(cli, "napper", statuses=("running",))
    assert napping["deployment_version"] == v2
    rotated = cli.json("workspace", "rotate-key")
    assert rotated["commit"]

    done = cli.json("deployment", "rollback", v1[:10])
    assert done["status"] == "rolled_back" and done["target"] == v1, done
    assert done["plan"]["archived"] == ["jobs.__deployment__.extra"], done
    assert "jobs.__deployment__.nightly" in done["plan"]["updated"], done
    assert done["resealed"] == ["config/prod.secrets.toml"], done
    assert done["undone"] == [rotated["commit"], v2]
    assert done["deployment_version"] == done["commit"] == repo_head(cli)

    # jobs as in v1: the added job archived, the schedule back
    after = jobs(cli)
    assert after.pop("jobs.__deployment__.extra")[0] == "archived"
    assert after == v1_jobs
    # history kept: three deployments, the newest the rollback, naming what it undoes
    listed = cli.json("deployment", "list")
    assert [v["version"] for v in listed] == [done["commit"], v2, v1]
    message = listed[0]["message"]
    assert message.startswith(f"Rollback to {v1[:12]}") and v2[:12] in message, message
    assert len(commits(cli)) == 4  # v1, v2, the key rotation, the rollback
    text = cli.run("deployment", "list").stdout
    assert f"Rollback to {v1[:12]}" in text

    # v1's secret, sealed again for the current key, reaches a new run
    cli.run("launch", "use_secret")
    run = wait_run(cli, "use_secret")
    assert run["status"] == "completed", run
    assert run["result"]["result"]["sha256"] == hashlib.sha256(first.encode()).hexdigest()
    # the run in flight kept running its version
    still = cli.json("job-run", "napper", str(napping["number"]), "info")
    assert still["status"] == "running" and still["deployment_version"] == v2, still
    cli.run("cancel", "napper")

    # rolling back to what HEAD holds: nothing to do, exit 0, nothing written
    head = repo_head(cli)
    same = cli.run("deployment", "rollback", v1)
    assert f"nothing to do: workspace {cli.workspace} holds {v1[:12]} already" in same.stdout
    assert repo_head(cli) == head


def refused(cli: Cli, *args: str) -> str:
    """A rollback that must fail with exactly one line on stderr and nothing on stdout."""
    proc = cli.run("deployment", "rollback", *args, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and not proc.stdout, proc
    return lines[0]


def test_bad_rollbacks_change_nothing(cli: Cli, tmp_path: Path) -> None:
    ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
    write(ws, V1, "one")
    cli.run("deploy", cwd=ws)
    [v1] = [v["version"] for v in cli.json("deployment", "list")]
    (ws / ".dlt" / "prod.config.toml").write_text('[sources.api]\nbase_url = "https://b"\n')
    cli.run("deploy", cwd=ws)  # configuration only: not a deployment
    config_only = cli.json("configuration", "list")[0]["version"]
    write(ws, V2, "one")
    cli.run("deploy", cwd=ws)
    before, head = state(cli), repo_head(cli)
    listing = f"`dockyard deployment list -w {cli.workspace}` shows them"

    said = refused(cli, "not-a-sha")
    assert "is not a commit SHA (7 to 40 hex digits)" in said and listing in said, said
    said = refused(cli, v1[:6])
    assert "is not a commit SHA" in said, said
    said = refused(cli, "0" * 40)
    assert f"is not a deployment of workspace {cli.workspace}" in said and listing in said
    said = refused(cli, config_only)
    assert f"{config_only} is not a deployment of workspace" in said, said
    other = refused(cli, v1, "-w", "no-such-workspace")
    assert "no-such-workspace" in other, other

    # a token that may only read the workspace may not roll it back
    made = cli.server.api(
        "POST",
        "/api/v1/tokens",
        json={"name": "reader", "role": "read", "workspace": cli.workspace},
    )
    assert made.status_code == 201, made.text
    answer = cli.server.api(
        "POST",
        f"/api/v1/workspaces/{cli.workspace}/deployments/{v1}/rollback",
        token=made.json()["token"],
    )
    assert answer.status_code == 403, answer.text

    assert state(cli) == before and repo_head(cli) == head


def test_linked_workspace_is_rolled_back_on_github(cache_home: Path, tmp_path: Path) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", "linked")
    try:
        url, secret = link(cli, "linked", host.api_url())
        host.create(REPO)
        ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
        git("init", "-q", "-b", "main", cwd=ws)
        sources = []
        for n, code in enumerate((V1, V2)):
            (ws / "__deployment__.py").write_text(code)
            sources.append(push(host, ws, f"v{n + 1}"))
            body, headers = gh.signed(secret, "push", gh.push(REPO, "main", sources[-1]), f"r{n}")
            assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202
            last = processed(cli, "linked")
            assert last["status"] == "done", last
        before, head = state(cli), repo_head(cli)
        v1 = before[0][-1]["version"]
        assert before[0][-1]["source_commit"] == f"{REPO}@{sources[0]}"

        said = refused(cli, v1[:12])
        assert f"deploys from GitHub {REPO}@main" in said, said
        assert f"`git revert --no-edit {sources[0]}..{sources[1]}`" in said, said
        assert "--force" in said and "the next push deploys GitHub's head again" in said, said
        assert state(cli) == before and repo_head(cli) == head

        forced = cli.run("deployment", "rollback", v1[:12], "--force")
        assert f"rolled back linked to {v1[:12]}" in forced.stdout, forced
        assert "the next push there deploys GitHub's head again" in forced.stderr, forced
        assert jobs(cli)["jobs.__deployment__.extra"][0] == "archived"
    finally:
        server.stop()
        host.stop()
