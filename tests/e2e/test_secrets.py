"""Secrets end to end: encrypted per value in git, decrypted only for the run, never in clear
anywhere else (git objects, database, server log, API responses, run logs)."""

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest

from tests import dbread
from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run

TOKEN_RE = re.compile(r"ENC\[age,v1,(k[0-9a-f]{12}),([A-Za-z0-9_-]{22}),([^\]]*)\]")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv").start()
    yield server
    server.stop()


def secret_ws(tmp_path: Path, key: str, recovery: str | None = None) -> Path:
    ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{key}"\n')
    if recovery:
        with (ws / ".dlt" / "config.toml").open("a") as f:
            f.write(f'\n[dockyard]\nrecovery_recipient = "{recovery}"\n')
    return ws


def bare_repo(server: Server, workspace: str) -> Path:
    return server.data_dir / "repos" / f"{workspace}.git"


def git_objects(repo: Path) -> bytes:
    """Every object in a repository, decompressed."""
    return subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout


def committed(repo: Path, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"HEAD:{path}"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_secret_reaches_its_job_and_nothing_else(
    own_server: Server, cache_home: Path, tmp_path: Path
) -> None:
    value = "sk-" + secrets.token_hex(16)
    recovery = pyrage.x25519.Identity.generate()
    cli = Cli(own_server, cache_home, tmp_path / "config", "vault")
    ws = secret_ws(tmp_path, value, str(recovery.to_public()))
    said = [cli.run("deploy", cwd=ws)]
    said.append(cli.run("launch", "use_secret", "-f"))
    run = wait_run(cli, "use_secret")
    assert run["status"] == "completed", run
    # the job received it ...
    assert run["result"]["result"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
    # ... and printed it once: the stored log shows *** instead
    log = cli.json("job-run", "use_secret", "logs")["lines"]
    assert "the key is *** (printed on purpose)" in [ln["m"] for ln in log]
    assert run["result"]["result"]["echo"] == "***"  # what the job reported, redacted too

    for args in (
        ("info",),
        ("workspace", "key"),
        ("job", "list"),
        ("job-run", "use_secret", "info"),
        ("configuration", "list"),
        ("configuration", "info"),
        ("deployment", "info"),
    ):
        said.append(cli.run(*args, "-o", "json"))
    base = f"/api/v1/workspaces/{cli.workspace}"
    answers = [
        own_server.api("GET", path).text
        for path in (
            base,
            f"{base}/key",
            f"{base}/key?purpose=deploy",
            f"{base}/jobs",
            f"{base}/runs",
            f"/api/v1/runs/{run['run_id']}",
            f"/api/v1/runs/{run['run_id']}/logs",
            f"{base}/configurations",
            f"{base}/configurations/latest",
            f"{base}/deployments/latest",
        )
    ]
    repo = bare_repo(own_server, cli.workspace)
    places = {
        "git objects": git_objects(repo),
        "CLI output": "".join(p.stdout + p.stderr for p in said).encode(),
        "API responses": "".join(answers).encode(),
        "server log": own_server.log.read_bytes(),
    }
    # and every file the server keeps: database (+ WAL), repositories, runs, logs, state
    for path in files_under(own_server.data_dir):
        places[str(path)] = path.read_bytes()
    for path in files_under(cache_home / "dockyard" / "repos"):
        places[str(path)] = path.read_bytes()  # the CLI's own mirrors of workspace repos
    places["database"] = dbread.dump(dbread.url_of(own_server)).encode()
    leaks = [where for where, data in places.items() if value.encode() in data]
    assert leaks == []
    assert cli.workspace in places["database"].decode()  # the database was read

    # the committed file: key names readable, the value an age ciphertext the recovery
    # identity opens with the stock age tool
    text = committed(repo, "config/prod.secrets.toml")
    assert "[sources.api]" in text and "key = " in text
    token = TOKEN_RE.search(text)
    assert token is not None
    identity = tmp_path / "recovery.txt"
    identity.write_text(f"{recovery}\n")
    opened = subprocess.run(
        ["age", "-d", "-i", str(identity)],
        input=base64.b64decode(token.group(3)),
        capture_output=True,
        check=True,
    )
    assert json.loads(opened.stdout) == {"k": ["sources", "api", "key"], "v": value}


def test_versions_diffs_and_rotation(own_server: Server, cache_home: Path, tmp_path: Path) -> None:
    cli = Cli(own_server, cache_home, tmp_path / "config", "rotating")
    ws = secret_ws(tmp_path, "first-" + secrets.token_hex(8))
    cli.run("deploy", cwd=ws)
    first = cli.json("info")
    cli.run("deploy", cwd=ws)  # unchanged values keep their ciphertexts: nothing new
    assert cli.json("info")["head_sha"] == first["head_sha"]

    second = "second-" + secrets.token_hex(8)
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{second}"\n')
    cli.run("configuration", "sync", cwd=ws)
    now = cli.json("info")
    assert now["deployment_version"] == first["deployment_version"]  # config only
    assert now["configuration_version"] != first["configuration_version"]
    info = cli.json("configuration", "info")
    assert info["changes"]["changed"] == ["prod.secrets.toml: sources.api.key"]
    assert info["compared_with"] == first["configuration_version"]
    assert "changed: prod.secrets.toml: sources.api.key" in cli.run("configuration", "info").stdout

    repo = bare_repo(own_server, cli.workspace)
    old_kid = cli.json("workspace", "key")["key_id"]
    rotated = cli.json("workspace", "rotate-key")
    assert rotated["retired_key_id"] == old_kid and rotated["key_id"] != old_kid
    text = committed(repo, "config/prod.secrets.toml")
    assert {m.group(1) for m in TOKEN_RE.finditer(text)} == {rotated["key_id"]}
    after = cli.json("info")
    assert after["deployment_version"] == first["deployment_version"]
    assert after["configuration_version"] == rotated["commit"]
    cli.run("launch", "use_secret", "-f")
    run = wait_run(cli, "use_secret")
    assert run["result"]["result"]["sha256"] == hashlib.sha256(second.encode()).hexdigest()
    assert run["configuration_version"] == rotated["commit"]
    # the next deploy keeps the re-encrypted values: nothing to commit
    cli.run("deploy", cwd=ws)
    assert cli.json("info")["head_sha"] == rotated["commit"]


def clone(server: Server, workspace: str, target: Path) -> Path:
    url = server.url.replace("http://", f"http://dockyard:{server.token}@")
    subprocess.run(
        ["git", "clone", "-q", f"{url}/git/{workspace}.git", str(target)],
        check=True,
        capture_output=True,
    )
    for key, val in (("user.name", "t"), ("user.email", "t@localhost")):
        subprocess.run(["git", "config", key, val], cwd=target, check=True)
    return target


def push(work: Path) -> subprocess.CompletedProcess[str]:
    subprocess.run(["git", "commit", "-qam", "by hand"], cwd=work, check=True)
    return subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True
    )


def test_bad_secrets_are_refused(own_server: Server, cache_home: Path, tmp_path: Path) -> None:
    value = "v-" + secrets.token_hex(12)
    cli = Cli(own_server, cache_home, tmp_path / "config", "strict")
    ws = secret_ws(tmp_path, value)
    cli.run("deploy", cwd=ws)
    head = cli.json("info")["head_sha"]
    secrets_file = ws / ".dlt" / "prod.secrets.toml"

    # malformed TOML: file and line, nothing committed
    secrets_file.write_text('[sources.api]\nkey = "unterminated\n')
    error = cli.fails("deploy", cwd=ws)
    assert "prod.secrets.toml" in error and "line 2" in error and "unterminated" not in error
    # a value encrypted for another workspace's key
    other = Cli(own_server, cache_home, tmp_path / "config2", "strict-other")
    cli.run("workspace", "create", "strict-other")
    other_ws = secret_ws(tmp_path / "o", "x-" + secrets.token_hex(8))
    other.run("deploy", cwd=other_ws)
    foreign = committed(bare_repo(own_server, "strict-other"), "config/prod.secrets.toml")
    secrets_file.write_text(foreign)
    error = cli.fails("deploy", cwd=ws)
    assert "encrypted for a different workspace" in error
    assert cli.json("info")["head_sha"] == head

    # by hand, with the stock git client: plaintext is refused at receive time ...
    work = clone(own_server, cli.workspace, tmp_path / "clone")
    sealed = (work / "config" / "prod.secrets.toml").read_text()
    (work / "config" / "prod.secrets.toml").write_text('[sources.api]\nkey = "plain"\n')
    pushed = push(work)
    assert pushed.returncode != 0 and "is in clear text" in pushed.stderr
    assert cli.json("info")["head_sha"] == head
    # ... a tampered ciphertext passes the hook (it cannot decrypt) but refuses the run
    subprocess.run(["git", "reset", "-q", "--hard", "origin/main"], cwd=work, check=True)
    token = TOKEN_RE.search(sealed)
    assert token is not None
    payload = bytearray(base64.b64decode(token.group(3)))
    payload[-5] ^= 0x01
    damaged = sealed.replace(token.group(3), base64.b64encode(bytes(payload)).decode())
    (work / "config" / "prod.secrets.toml").write_text(damaged)
    assert push(work).returncode == 0
    cli.run("launch", "use_secret", check=False)
    run = wait_run(cli, "use_secret")
    assert run["status"] == "failed"
    assert "cannot be decrypted (tampered or truncated ciphertext)" in run["reason"]
    assert value not in json.dumps(run)
    shutil.rmtree(work)
