"""Warm starts on the Docker executor, against a real engine: a held container (the image's
Python up, dlt and the launcher imported, waiting on its release FIFO) is taken by the next
run of its job; its secrets are written and read at release, never while it waits; a server
that stops leaves no held container behind."""

import hashlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, wait_run
from tests.e2e import test_warm_pool as warm_pool
from tests.e2e.test_docker import SKIP, docker_engine, docker_server

pytestmark = pytest.mark.slow
__all__ = ["docker_engine"]  # the fixture, shared with the Docker executor tests


@pytest.fixture
def wserver(docker_engine: None, tmp_path: Path) -> Iterator[Server]:
    # room for four held containers; idle expiry well past the test
    srv = docker_server(tmp_path / "srv", DOCKYARD_WARM_POOL_MB="280", DOCKYARD_NODE_NAME="dw")
    yield srv
    srv.stop()


def wait_held(server: Server, count: int) -> set[str]:
    return warm_pool.wait_held(server, count, timeout=180)  # an image's imports take longer


def dockyard_containers(server_label: str = "dockyard.run_id") -> list[dict[str, str]]:
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={server_label}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_launch_takes_the_held_container_of_its_job(
    wserver: Server, cache_home: Path, tmp_path: Path
) -> None:
    cli = Cli(wserver, cache_home, tmp_path / "config", "containers")
    ws = copy_workspace(WORKSPACES / "containers", tmp_path / "containers")
    cli.run("deploy", *SKIP, cwd=ws)
    cli.run("launch", "hello", "-f")  # cold: builds the image, the job is warmed after it
    cold = wait_run(cli, "hello", 1)
    (waiting,) = wait_held(wserver, 1)
    names = {c["Names"] for c in dockyard_containers()}
    assert f"dockyard-run-{waiting}" in names  # a started container waits for a run

    out = cli.run("launch", "hello", "-f").stdout
    run = wait_run(cli, "hello", 2)
    assert run["run_id"] == waiting and run["status"] == "completed", run
    assert run["executor"] == "docker"
    assert run["environment"] == cold["environment"] is not None
    assert "cwd /workspace" in out and "greeting:" in out
    log = (wserver.data_dir / "runs" / waiting / "log.jsonl").read_text()
    assert "released a warm pool's held process" in log
    assert "to stderr" in log
    # its container is removed once its end is read, like a cold run's
    deadline = time.monotonic() + 30
    while f"dockyard-run-{waiting}" in {c["Names"] for c in dockyard_containers()}:
        assert time.monotonic() < deadline, "the warm run's container was not removed"
        time.sleep(0.2)


def test_a_held_container_gets_its_secrets_at_release_and_the_log_hides_them(
    wserver: Server, cache_home: Path, tmp_path: Path
) -> None:
    value = "dk-" + secrets.token_hex(16)
    cli = Cli(wserver, cache_home, tmp_path / "config", "docker-secrets")
    ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{value}"\n')
    cli.run("deploy", cwd=ws)
    cli.run("launch", "use_secret", "-f")
    (waiting,) = wait_held(wserver, 1)
    on_disk = [
        p
        for p in wserver.data_dir.rglob("*")
        if p.is_file() and not p.is_fifo() and value.encode() in p.read_bytes()
    ]
    assert on_disk == []  # the held container's copy has no secrets

    out = cli.run("launch", "use_secret", "-f").stdout
    run = cli.json("job-run", "use_secret", "info")
    assert run["run_id"] == waiting and run["status"] == "completed", run
    assert run["result"]["result"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
    assert "the key is *** (printed on purpose)" in out and value not in out
    stored = (wserver.data_dir / "runs" / waiting / "log.jsonl").read_text()
    assert value not in stored and "***" in stored


def test_a_stopped_or_crashed_server_leaves_no_held_container(
    docker_engine: None, cache_home: Path, tmp_path: Path
) -> None:
    """Stopped: its held containers are discarded and removed. Killed (SIGKILL): what it
    held is removed when it starts again (its containers never run a job meanwhile: their
    release FIFO's writer is gone)."""
    server = docker_server(tmp_path / "srv", DOCKYARD_WARM_POOL_MB="280", DOCKYARD_NODE_NAME="ds")
    try:
        cli = Cli(server, cache_home, tmp_path / "config", "containers")
        ws = copy_workspace(WORKSPACES / "containers", tmp_path / "containers")
        cli.run("deploy", *SKIP, cwd=ws)
        cli.run("launch", "also_plain", "-f")
        (waiting,) = wait_held(server, 1)
    finally:
        server.stop()
    names = {c["Names"] for c in dockyard_containers()}
    assert f"dockyard-run-{waiting}" not in names

    server.start()
    try:
        cli.run("launch", "also_plain", "-f")
        (crashed,) = wait_held(server, 1)
        server.stop(signal.SIGKILL)
        assert f"dockyard-run-{crashed}" in {c["Names"] for c in dockyard_containers()}
        server.start()
        deadline = time.monotonic() + 60
        while f"dockyard-run-{crashed}" in {c["Names"] for c in dockyard_containers()}:
            assert time.monotonic() < deadline, "a crashed server's held container stayed"
            time.sleep(0.2)
        assert not (server.data_dir / "runs" / crashed).exists()
    finally:
        server.stop()
