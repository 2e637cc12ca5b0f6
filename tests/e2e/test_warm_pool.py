"""Warm starts for any run, through a real server, the real CLI and real dlt runs: a launch
takes the held process its job's last run left warm (its run id is that process's), a
follow-up is told its upstream at release, a configuration changed or code deployed between
fill and take is never run by the stale process, a workspace with secrets is held without
them and gets them at release (in clear on disk only while its runs run), and with the pool
off nothing is held."""

import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Server, make_server, wait_run

pytestmark = pytest.mark.slow

JOBS = """

@run.job
def secret_check():
    import hashlib

    key = dlt.secrets.get("sources.api.key") or dlt.config.get("sources.api.key")
    print("secret sha256", hashlib.sha256(key.encode()).hexdigest(), flush=True)
    print("the key is", key, flush=True)
    print("code version 1", flush=True)


@run.job(trigger=secret_check.success)
def after_secret():
    for key in sorted(os.environ):
        if key.startswith("DOCKYARD_UPSTREAM_"):
            print(f"env {key}={os.environ[key]}", flush=True)


__all__ = __all__ + ["secret_check", "after_secret"]
"""


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def warm_server(tmp_path: Path) -> Iterator[Server]:
    # room for four held processes whatever the machine; idle expiry well past the test
    srv = make_server(tmp_path, DOCKYARD_WARM_POOL_MB="280", DOCKYARD_NODE_NAME="warm").start()
    yield srv
    srv.stop()


def workspace(ws: Path, key: str, secret: bool = False) -> Path:
    """The basic workspace with the two jobs; `key` in its configuration, or in a secrets
    file."""
    source = ws / "__deployment__.py"
    source.write_text(source.read_text() + JOBS)
    set_key(ws, key, secret)
    return ws


def set_key(ws: Path, key: str, secret: bool = False) -> None:
    if secret:
        (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{key}"\n')
        return
    config = ws / ".dlt" / "prod.config.toml"
    base = config.read_text().split("\n[sources.api]\n")[0]
    config.write_text(f'{base}\n[sources.api]\nkey = "{key}"\n')


def held(server: Server) -> set[str]:
    """The run ids of the held processes (and taken ones not yet released) of the server."""
    index = server.data_dir / "runs" / ".prewarm"
    return {p.name for node in index.glob("*") if node.is_dir() for p in node.iterdir()}


def wait_held(server: Server, count: int, timeout: float = 120) -> set[str]:
    deadline = time.monotonic() + timeout
    while len(found := held(server)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the pool did not fill to {count}: {found}")
        time.sleep(0.2)
    return found


def run_log(server: Server, run_id: str) -> str:
    lines = (server.data_dir / "runs" / run_id / "log.jsonl").read_text().splitlines()
    return "\n".join(json.loads(line)["m"] for line in lines)


def launch(cli: Cli, job: str, number: int) -> dict[str, object]:
    cli.run("launch", job)
    done = wait_run(cli, job, number)
    assert done["status"] == "completed", done
    return done


def test_a_configuration_changed_between_fill_and_take_is_never_run_by_the_stale_process(
    warm_server: Server, cache_home: Path, basic_ws: Path, tmp_path: Path
) -> None:
    cli = Cli(warm_server, cache_home, tmp_path / "config", "warm")
    first, second = "k-" + secrets.token_hex(8), "k-" + secrets.token_hex(8)
    ws = workspace(basic_ws, first)
    cli.run("deploy", cwd=ws)
    launch(cli, "secret_check", 1)  # cold: the job and its follow-up are warmed meanwhile
    wait_run(cli, "after_secret", 1)
    stale = wait_held(warm_server, 2)

    set_key(ws, second)
    cli.run("configuration", "sync", cwd=ws)
    run = launch(cli, "secret_check", 2)

    assert f"secret sha256 {sha(second)}" in run_log(warm_server, str(run["run_id"]))
    assert run["run_id"] not in stale  # the held process of the old configuration never ran
    follow = wait_run(cli, "after_secret", 2)
    assert follow["status"] == "completed" and follow["run_id"] not in stale


def test_a_launch_takes_the_warm_process_and_a_follow_up_gets_its_upstream_at_release(
    warm_server: Server, cache_home: Path, basic_ws: Path, tmp_path: Path
) -> None:
    cli = Cli(warm_server, cache_home, tmp_path / "config", "warm")
    key = "sk-" + secrets.token_hex(8)
    cli.run("deploy", cwd=workspace(basic_ws, key))
    cold = launch(cli, "secret_check", 1)
    wait_run(cli, "after_secret", 1)
    warm = wait_held(warm_server, 2)

    run = launch(cli, "secret_check", 2)
    follow = wait_run(cli, "after_secret", 2)

    assert run["run_id"] in warm  # it ran in the held process's run id
    assert run["environment"] == cold["environment"] is not None  # recorded as a cold start
    log = run_log(warm_server, str(run["run_id"]))
    assert "released a warm pool's held process" in log
    assert f"secret sha256 {sha(key)}" in log
    assert follow["status"] == "completed" and follow["run_id"] in warm
    told = dict(
        re.findall(r"env (DOCKYARD_UPSTREAM_\w+)=(.*)", run_log(warm_server, follow["run_id"]))
    )
    assert told["DOCKYARD_UPSTREAM_RUN_ID"] == run["run_id"]
    assert told["DOCKYARD_UPSTREAM_RUN_NUMBER"] == "2"
    assert told["DOCKYARD_UPSTREAM_STATUS"] == "completed"


def test_a_deploy_between_fill_and_take_runs_the_new_code(
    warm_server: Server, cache_home: Path, basic_ws: Path, tmp_path: Path
) -> None:
    cli = Cli(warm_server, cache_home, tmp_path / "config", "warm")
    ws = workspace(basic_ws, "sk-" + secrets.token_hex(8))
    cli.run("deploy", cwd=ws)
    launch(cli, "secret_check", 1)
    stale = wait_held(warm_server, 2)

    source = ws / "__deployment__.py"
    source.write_text(source.read_text().replace("code version 1", "code version 2"))
    cli.run("deploy", cwd=ws)
    run = launch(cli, "secret_check", 2)

    log = run_log(warm_server, str(run["run_id"]))
    assert "code version 2" in log and "code version 1" not in log
    assert run["run_id"] not in stale


def files_with(server: Server, value: str) -> list[Path]:
    found = []
    for path in server.data_dir.rglob("*"):
        with contextlib.suppress(OSError):  # a run's folder removed meanwhile
            if path.is_file() and value.encode() in path.read_bytes():
                found.append(path)
    return found


def test_a_workspace_with_secrets_is_held_without_them_and_gets_them_at_release(
    warm_server: Server, cache_home: Path, basic_ws: Path, tmp_path: Path
) -> None:
    """A held process's configuration copy has no secrets: while its processes wait, no
    file of the server holds the workspace's secret. Released, the run reads it (written
    and read by dlt at release) and its log hides it, as a cold run's does."""
    key = "sk-" + secrets.token_hex(8)
    vault = Cli(warm_server, cache_home, tmp_path / "config", "vault")
    vault.run("workspace", "create", "vault")
    vault.run("deploy", cwd=workspace(basic_ws, key, secret=True))
    cold = launch(vault, "secret_check", 1)
    assert wait_run(vault, "after_secret", 1)["status"] == "completed"
    warm = wait_held(warm_server, 2)  # the job and its follow-up
    assert files_with(warm_server, key) == []

    run = launch(vault, "secret_check", 2)
    assert run["run_id"] in warm
    for done in (cold, run):
        log = run_log(warm_server, str(done["run_id"]))
        assert f"secret sha256 {sha(key)}" in log
        assert "the key is ***" in log and key not in log
    wait_run(vault, "after_secret", 2)
    wait_held(warm_server, 2)  # filled again, without the secret
    deadline = time.monotonic() + 30  # the warm run's copy goes when its end is seen
    while found := files_with(warm_server, key):
        assert time.monotonic() < deadline, f"the secret stayed on disk: {found}"
        time.sleep(0.2)


def test_with_the_pool_off_nothing_is_held(
    cache_home: Path, basic_ws: Path, tmp_path: Path
) -> None:
    server = make_server(tmp_path, DOCKYARD_WARM_POOL_MB="0", DOCKYARD_NODE_NAME="cold").start()
    try:
        cli = Cli(server, cache_home, tmp_path / "config", "cold")
        cli.run("deploy", cwd=workspace(basic_ws, "sk-" + secrets.token_hex(8)))
        launch(cli, "secret_check", 1)
        follow = wait_run(cli, "after_secret", 1)
        launch(cli, "secret_check", 2)
        assert follow["status"] == "completed"
        assert held(server) == set()
        assert "warm pool" not in (server.data_dir.parent / "server.log").read_text()
    finally:
        server.stop()
