"""A workspace on the Docker executor linked to GitHub: the server builds the manifest of a
pushed commit in a container of the workspace's image (`controller/sourcecontainer.py`), not
on the host, and deploys it. Needs the real Docker engine (skipped locally without one,
failed in CI, like tests/e2e/test_docker.py)."""

import json
import subprocess
from pathlib import Path

import httpx

from tests import github_examples as gh
from tests.conftest import WORKSPACES, Cli, copy_workspace
from tests.e2e.test_docker import docker_engine, docker_server
from tests.e2e.test_github_crash import GH_TOKEN, REPO, link, processed
from tests.e2e.test_github_secrets import push
from tests.githost import GitHost, git

__all__ = ["docker_engine"]  # the fixture, used by name


def inspect_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", "label=dockyard.inspect"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def test_a_pushed_commit_is_inspected_in_a_container(
    docker_engine: None, cache_home: Path, tmp_path: Path
) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    server = docker_server(tmp_path / "srv")
    cli = Cli(server, cache_home, tmp_path / "config", "boxed")
    try:
        url, secret = link(cli, "boxed", host.api_url())
        host.create(REPO)
        ws = copy_workspace(WORKSPACES / "probed", tmp_path / "ws")
        git("init", "-q", "-b", "main", cwd=ws)
        pushed = push(host, ws, "probe")
        body, headers = gh.signed(secret, "push", gh.push(REPO, "main", pushed), "d-1")
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202
        last = processed(cli, "boxed", timeout=900)
        assert last["status"] == "done", last["outcome"]

        [job] = [j for j in cli.json("job", "list") if j["name"] == "probe"]
        assert job["description"] == "imported in a container", job
        # nothing was built or imported on the host; the inspection's container is gone
        assert not (server.data_dir / "source-envs").exists()
        assert inspect_containers() == []
        listed = cli.json("deployment", "list")
        assert listed[0]["source_commit"] == f"{REPO}@{pushed}", json.dumps(listed)

        # a commit whose import fails: refused with dlt's reason, read back from the container
        with (ws / "__deployment__.py").open("a") as f:
            f.write('\nraise ValueError("broken in the box")\n')
        bad = push(host, ws, "broken")
        body, headers = gh.signed(secret, "push", gh.push(REPO, "main", bad), "d-2")
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202
        last = processed(cli, "boxed", timeout=900)
        assert last["status"] == "failed", last
        assert "ValueError: broken in the box" in last["outcome"], last["outcome"]
        assert cli.json("deployment", "list") == listed  # nothing changed on the server
        assert inspect_containers() == []
    finally:
        server.stop()
        host.stop()
