"""Secrets in a linked repository: `dockyard secrets seal` seals a workspace's values in
place for its key; the sealed files, pushed to a loopback "GitHub" and deployed by a signed
webhook delivery, reach the job; a laptop `deploy` to the linked workspace is refused unless
forced; a clear value in the repository is refused with the file, the key and the fix, and
nothing changes on the server."""

import hashlib
import re
import secrets
import shutil
from pathlib import Path

import httpx

from tests import github_examples as gh
from tests.conftest import WORKSPACES, Cli, copy_workspace, make_server, wait_run
from tests.e2e.test_github_crash import GH_TOKEN, link, processed
from tests.githost import GitHost, git

REPO = "acme/pipelines"  # what `link` links to
TOKEN_RE = re.compile(r"ENC\[age,v1,(k[0-9a-f]{12}),")


def push(host: GitHost, clone: Path, message: str) -> str:
    return host.commit_and_push(REPO, clone, message)


def test_sealed_in_place_pushed_and_deployed_by_a_webhook(cache_home: Path, tmp_path: Path) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    server = make_server(tmp_path).start()
    cli = Cli(server, cache_home, tmp_path / "config", "vault")
    try:
        url, secret = link(cli, "vault", host.api_url())
        value = "sk-" + secrets.token_hex(16)
        ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
        secrets_file = ws / ".dlt" / "prod.secrets.toml"
        secrets_file.write_text(f'[sources.api]\nkey = "{value}"\n')

        said = cli.run("secrets", "seal", cwd=ws).stdout
        sealed = secrets_file.read_text()
        assert value not in sealed
        kid = cli.json("workspace", "key")["key_id"]
        assert TOKEN_RE.findall(sealed) == [kid], sealed
        assert f"sealed for key {kid}" in said
        assert "already sealed" in cli.run("secrets", "seal", cwd=ws).stdout
        assert secrets_file.read_text() == sealed  # sealing twice changes nothing

        host.create(REPO)
        shutil.rmtree(ws / ".venv", ignore_errors=True)
        git("init", "-q", "-b", "main", cwd=ws)
        pushed = push(host, ws, "sealed secrets")
        body, headers = gh.signed(secret, "push", gh.push(REPO, "main", pushed), "v-1")
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202
        last = processed(cli, "vault")
        assert last["status"] == "done", last["outcome"]

        # the workspace deploys from GitHub now: a deploy from a folder is refused ...
        refused = cli.fails("deploy", cwd=ws)
        assert f"deploys from GitHub {REPO}@main" in refused and "--force" in refused, refused
        assert cli.json("deploy", "--dry-run", cwd=ws)["dry_run"] is True  # planning is fine
        cli.run("deploy", "--force", cwd=ws)  # ... unless forced

        cli.run("launch", "use_secret", "-f")
        run = wait_run(cli, "use_secret")
        assert run["status"] == "completed", run
        assert run["result"]["result"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()

        # a clear value committed by hand: refused, with the file, the key and the fix
        secrets_file.write_text('[sources.api]\nkey = "typed-in-by-hand"\n')
        bad = push(host, ws, "oops")
        body, headers = gh.signed(secret, "push", gh.push(REPO, "main", bad), "v-2")
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 202
        last = processed(cli, "vault")
        assert last["status"] == "failed", last
        assert "prod.secrets.toml" in last["outcome"] and "sources.api.key" in last["outcome"]
        assert "dockyard secrets seal" in last["outcome"]
        assert "typed-in-by-hand" not in last["outcome"]
        assert cli.json("workspace", "info", "-w", "vault")["github"]["last_processed_head"] == (
            pushed
        )  # the sealed version keeps running
    finally:
        server.stop()
        host.stop()
