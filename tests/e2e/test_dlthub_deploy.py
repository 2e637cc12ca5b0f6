"""`dlthub deploy` against dockyard: the real client (tests/e2e/test_dlthub_cli.py's
environment) uploads its packages and manifest to a real `dockyard server --dlthub-compat`,
and the workspace ends up exactly as `dockyard deploy` leaves it: one commit, the same
`manifest.yaml` byte for byte, secrets sealed on receipt and never in clear anywhere.
"""

import hashlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import dbread
from tests.conftest import WORKSPACES, Cli, copy_workspace, make_server, wait_run
from tests.e2e.test_dlthub_cli import REF, Stand, client_env

pytestmark = pytest.mark.slow

WS, TWIN = "shipped", "twin"
SECRET = "sk-" + secrets.token_hex(16)
USES_SECRET = """

@run.job
def secret_check():
    import hashlib

    import dlt

    key = dlt.secrets["sources.api.key"]
    print("secret sha256", hashlib.sha256(key.encode()).hexdigest(), flush=True)
"""


def workspace(target: Path) -> Path:
    """The dlthub CLI test workspace with a job that reads a secret, and the secret."""
    root = copy_workspace(WORKSPACES / "dlthubcli", target)
    code = (root / "__deployment__.py").read_text()
    code = code.replace('"napper"]', '"napper", "secret_check"]') + USES_SECRET
    (root / "__deployment__.py").write_text(code)
    # a new directory: not recorded for any workspace yet (`dockyard deploy` records it)
    (root / ".dlt" / "config.toml").write_text('[runtime]\nlog_level = "WARNING"\n')
    (root / ".dlt" / "secrets.toml").write_text(f'[sources.api]\nkey = "{SECRET}"\n')
    return root


def repo(stand: Stand, name: str) -> Path:
    return stand.server.data_dir / "repos" / f"{name}.git"


def git(where: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Stand]:
    dlthub = client_env() / "bin" / "dlthub"
    tmp = tmp_path_factory.mktemp("dlthub-deploy")
    server = make_server(tmp)
    server.args = ["--dlthub-compat"]
    server.start()
    try:
        admin = Cli(server, cache_home, tmp / "config", WS)
        admin.make_workspace(WS)
        made = admin.json("token", "create", "ci", "--dlthub", "-w", WS)
        ws_id = admin.json("workspace", "info")["dlthub_id"]
        yield Stand(server, admin, workspace(tmp / "ws"), ws_id, made["token"], dlthub)
    finally:
        server.stop()


def test_a_first_deploy_is_one_commit_like_dockyard_deploys(stand: Stand) -> None:
    out = stand.ok("deploy")

    assert (
        "Synced changed workspace files" in out and "Synced changed workspace configuration" in out
    )
    assert "New jobs:" in out and "+ hello" in out and "+ secret_check" in out
    assert "8 added, 0 updated, 0 archived" in out
    log = git(repo(stand, WS), "log", "--format=%s", "main")
    assert log.splitlines() == ["deploy: 8 added"]

    # the same directory deployed by `dockyard deploy` to another workspace: same manifest
    twin = Cli(stand.server, stand.admin.cache_home, stand.admin.config_home, TWIN)
    twin.run("deploy", cwd=workspace(stand.ws_dir.parent / "twin"))
    ours, theirs = (git(repo(stand, n), "show", "main:manifest.yaml") for n in (WS, TWIN))
    assert ours == theirs and "jobs.__deployment__.secret_check" in ours

    # the secret reached the job, sealed all the way
    stand.ok("run", "secret_check", "-f")
    done = wait_run(stand.admin, "secret_check")
    assert done["status"] == "completed", done
    shown = stand.ok("job", "logs", "secret_check")
    assert f"secret sha256 {hashlib.sha256(SECRET.encode()).hexdigest()}" in shown


def test_an_unchanged_workspace_uploads_nothing_and_makes_no_version(stand: Stand) -> None:
    heads = {ref: git(repo(stand, WS), "rev-parse", ref) for ref in ("main", *STAGED)}

    out = stand.ok("deploy")

    assert "Synced changed" not in out  # the client skipped both uploads
    assert "0 added, 0 updated, 0 archived" in out
    assert {ref: git(repo(stand, WS), "rev-parse", ref) for ref in heads} == heads
    versions = stand.ok("workspace", "deployment", "list")
    assert len([ln for ln in versions.splitlines() if ln.strip().startswith("1 ")]) == 1


STAGED = ("refs/dockyard/dlthub/code", "refs/dockyard/dlthub/config")


def test_a_dry_run_plans_what_dockyard_deploy_plans_and_writes_nothing(stand: Stand) -> None:
    code = stand.ws_dir / "__deployment__.py"
    before = code.read_text()
    world = '@run.job(expose={"tags": ["quick"]})\ndef world():\n    print("world", flush=True)\n'
    assert world in before
    changed = (
        before.replace(world, "")
        .replace('"world", ', "")
        .replace('"secret_check"]', '"secret_check", "extra"]')
    )
    code.write_text(changed + "\n\n@run.job\ndef extra():\n    print('extra')\n")
    head = git(repo(stand, WS), "rev-parse", "main")
    try:
        out = stand.ok("deploy", "--dry-run")
        planned = stand.admin.json("deploy", "--dry-run", cwd=stand.ws_dir)
    finally:
        code.write_text(before)

    assert "Workspace files changed, skipping sync due to dry run" in out
    assert "+ extra" in out and "- world" in out and "Dry run, skipping..." in out
    assert planned["added"] == [f"{REF}.extra"] and planned["archived"] == [f"{REF}.world"]
    assert git(repo(stand, WS), "rev-parse", "main") == head


def test_no_secret_in_clear_anywhere(stand: Stand) -> None:
    said = [
        stand.run(*args)
        for args in (
            ("workspace", "info"),
            ("workspace", "configuration", "list"),
            ("workspace", "configuration", "info"),
            ("job", "info", "secret_check"),
        )
    ]
    base = f"{stand.server.url}/dlthub/api/v1/workspaces/{stand.ws_id}"
    key = {"Authorization": f"Bearer {stand.key}"}
    answers = [
        httpx.get(f"{base}{path}", headers=key, timeout=30).text
        for path in ("", "/configurations", "/configurations/latest", "/deployments/latest")
    ]
    places = {
        "client output": "".join(d.out + d.err for d in said).encode(),
        "API answers": "".join(answers).encode(),
        "git objects": subprocess.run(
            ["git", "cat-file", "--batch-all-objects", "--batch"],
            cwd=repo(stand, WS),
            capture_output=True,
            check=True,
        ).stdout,
        "server log": stand.server.log.read_bytes(),
        "database": dbread.dump(dbread.url_of(stand.server)).encode(),
    }
    for path in stand.server.data_dir.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert [where for where, data in places.items() if SECRET.encode() in data] == []
    assert WS in places["database"].decode()  # the dump was read
    assert places["API answers"].count(b'"content_hash"') >= 3  # real answers, not errors
    assert b"secret_check" in places["client output"]
