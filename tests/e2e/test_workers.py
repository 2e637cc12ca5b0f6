"""`dockyard worker` end to end: a real server with `DOCKYARD_EMBEDDED_RUNS=off` and a real
worker process (worker token, its own data dir, loopback only) running real dlt runs.

- a run goes to the worker: it completes, held by the worker, its log (secret redacted) and
  its result reach the server, `worker list` shows the worker; afterwards no decrypted
  configuration and no secret value is left anywhere in the worker's data dir;
- SIGKILL the worker and its run's processes: the server ends the run `failed` with "worker
  W lost (last heartbeat …)" and never runs it again;
- cancel a run on a worker: the heartbeat's stop list ends it `cancelled`;
- SIGKILL the agent only and start it again: it adopts its run, which completes with its
  whole log shipped once;
- freeze the agent past 15 s (a partition): the run ends as lost; thawed, the worker kills
  the run's process and the run stays as the server ended it;
- `--executor docker`: the run goes to a container on the worker;
- 60 claims waiting at once (more than the server's 40 request threads): the API still
  answers, and a run created then goes to exactly one of them.

No timed assertion: every wait has a generous deadline."""

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    WORKSPACES,
    Cli,
    Server,
    base_env,
    copy_workspace,
    make_server,
    wait_run,
)
from tests.e2e.test_docker import BASE_IMAGE, CA, SKIP, containers
from tests.e2e.test_docker import docker_engine as docker_engine  # the fixture
from tests.e2e.test_nodes import node, until

pytestmark = pytest.mark.slow


@dataclass
class Worker:
    name: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]
    token: str  # a worker name belongs to the token it registered with

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(
    server: Server, token: str, tmp: Path, name: str, *more: str, **env: str
) -> Worker:
    data = tmp / f"worker-{name}"
    log = tmp / f"worker-{name}.log"
    argv = [sys.executable, "-m", "dockyard", "worker", "--server", server.url]
    argv += ["--token", token, "--name", name, "--data-dir", str(data), "--slots", "2", *more]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**base_env(), **env}
        )
    return Worker(name, data, log, proc, token)


def worker_token(server: Server) -> str:
    made = server.api("POST", "/api/v1/tokens", json={"name": "w", "role": "worker"})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


@pytest.fixture
def yard(tmp_path: Path, cache_home: Path) -> Iterator[tuple[Server, Cli, Worker]]:
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv", DOCKYARD_EMBEDDED_RUNS="off").start()
    worker = start_worker(server, worker_token(server), tmp_path, "w1")
    cli = Cli(server, cache_home, tmp_path / "config", "fleet")
    try:
        until("the worker registered", lambda: node(cli, "w1").get("state") == "alive")
        yield server, cli, worker
    finally:
        worker.stop()
        server.stop()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def holds(root: Path, needle: bytes) -> list[Path]:
    found = []
    for path in files_under(root):
        try:
            if needle in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def test_a_worker_runs_a_batch_run_and_keeps_no_secret(
    yard: tuple[Server, Cli, Worker], tmp_path: Path
) -> None:
    _server, cli, worker = yard
    value = "sk-" + secrets.token_hex(16)
    ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{value}"\n')
    cli.run("deploy", cwd=ws)
    cli.run("launch", "use_secret", "-f")
    run = wait_run(cli, "use_secret", timeout=600)
    assert run["status"] == "completed", run
    assert run["holder"] == "w1"
    # the secret reached the job on the worker, the result came back through the beacon
    assert run["result"]["result"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
    lines = [ln["m"] for ln in cli.json("job-run", "use_secret", "logs")["lines"]]
    assert "the key is *** (printed on purpose)" in lines  # shipped, redacted on the worker
    assert any("started on worker w1" in line for line in lines)
    seen = node(cli, "w1")
    assert seen["kind"] == "worker" and seen["pool"] == "default" and seen["slots"] == 2
    # nothing of the configuration is left on the worker, and the secret never was on disk
    run_dir = worker.data_dir / "runs" / run["run_id"]
    assert (run_dir / "log.jsonl").exists()
    assert not (run_dir / "dlt").exists()
    assert holds(worker.data_dir, value.encode()) == []
    assert list((worker.data_dir / "state").glob("*.json")) == []


def napper_ws(tmp_path: Path) -> Path:
    return copy_workspace(WORKSPACES / "basic", tmp_path / "ws")


def wait_running_on_worker(cli: Cli, worker: Worker) -> dict[str, Any]:
    run = wait_run(cli, "napper", 1, statuses=("running",), timeout=600)
    assert run["holder"] == worker.name
    log = worker.data_dir / "runs" / run["run_id"] / "log.jsonl"
    until("the nap began", lambda: log.exists() and "nap 3" in log.read_text())
    assert node(cli, worker.name)["slots_in_use"] == 1
    return run


def test_a_killed_workers_run_fails_with_the_reason_and_is_not_run_again(
    yard: tuple[Server, Cli, Worker], tmp_path: Path
) -> None:
    _server, cli, worker = yard
    cli.run("deploy", cwd=napper_ws(tmp_path))
    cli.run("launch", "napper")
    run = wait_running_on_worker(cli, worker)
    proc = json.loads((worker.data_dir / "runs" / run["run_id"] / "proc.json").read_text())
    worker.kill()
    os.killpg(proc["pgid"], signal.SIGKILL)
    os.kill(proc["supervisor_pid"], signal.SIGKILL)
    ended = wait_run(cli, "napper", 1, timeout=120)
    assert ended["status"] == "failed", ended
    assert ended["reason"].startswith("worker w1 lost (last heartbeat "), ended
    assert node(cli, "w1")["state"] == "lost"
    runs = cli.json("job-run", "list", "napper")
    assert [r["run_id"] for r in runs] == [run["run_id"]]  # not run a second time


def test_cancelling_a_run_on_a_worker_stops_it_through_the_heartbeat(
    yard: tuple[Server, Cli, Worker], tmp_path: Path
) -> None:
    _server, cli, worker = yard
    cli.run("deploy", cwd=napper_ws(tmp_path))
    cli.run("launch", "napper")
    run = wait_running_on_worker(cli, worker)
    cli.run("job-run", "napper", "1", "cancel")
    ended = wait_run(cli, "napper", 1, timeout=120)
    assert ended["status"] == "cancelled", ended
    assert ended["holder"] == "w1"
    lines = [ln["m"] for ln in cli.json("job-run", "napper", "1", "logs")["lines"]]
    assert any("SIGTERM on worker w1" in line for line in lines)
    run_dir = worker.data_dir / "runs" / run["run_id"]
    until("the worker cleaned up", lambda: not (run_dir / "dlt").exists())


COUNTER = """

@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def counter():
    for i in range(120):
        print(f"count {i}", flush=True)
        time.sleep(0.1)
"""


def test_a_restarted_worker_adopts_its_run_and_ships_its_whole_log(
    yard: tuple[Server, Cli, Worker], tmp_path: Path
) -> None:
    server, cli, worker = yard
    ws = copy_workspace(WORKSPACES / "basic", tmp_path / "ws")
    source = ws / "__deployment__.py"
    text = source.read_text().replace('"tiny_api"]', '"tiny_api", "counter"]')
    source.write_text(text + COUNTER)
    cli.run("deploy", cwd=ws)
    cli.run("launch", "counter")
    run = wait_run(cli, "counter", 1, statuses=("running",), timeout=600)
    log = worker.data_dir / "runs" / run["run_id"] / "log.jsonl"
    until("the count began", lambda: log.exists() and "count 5" in log.read_text())
    worker.kill()  # the agent only: the run's process keeps running
    again = start_worker(server, worker.token, tmp_path, "w1")
    try:
        ended = wait_run(cli, "counter", 1, timeout=300)
        assert ended["status"] == "completed", ended
        assert ended["holder"] == "w1"
        lines = [ln["m"] for ln in cli.json("job-run", "counter", "1", "logs")["lines"]]
        counted = [line for line in lines if line.startswith("count ")]
        assert counted == [f"count {i}" for i in range(120)]  # whole, once, in order
        assert not (log.parent / "dlt").exists()
    finally:
        again.stop()
    # SIGTERM is a clean stop: the listing says so at once (not "lost" 15 s later)
    assert again.proc.returncode == 0
    assert node(cli, "w1")["state"] == "stopped"


@pytest.mark.usefixtures("docker_engine")
def test_a_worker_runs_a_batch_run_in_a_container(tmp_path: Path, cache_home: Path) -> None:
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv", DOCKYARD_EMBEDDED_RUNS="off").start()
    env = {"DOCKYARD_DOCKER_BASE_IMAGE": BASE_IMAGE}
    if os.path.exists(CA):
        env["DOCKYARD_DOCKER_CA_BUNDLE"] = CA
    worker = start_worker(
        server, worker_token(server), tmp_path, "dw", "--executor", "docker", **env
    )
    cli = Cli(server, cache_home, tmp_path / "config", "containers")
    try:
        cli.run("deploy", *SKIP, cwd=copy_workspace(WORKSPACES / "containers", tmp_path / "c"))
        cli.run("launch", "hello")
        run = wait_run(cli, "hello", timeout=900)
        assert run["status"] == "completed", run
        assert run["holder"] == "dw"
        assert run["result"]["result"] == {"greeting": "hello from prod in a container"}
        lines = [ln["m"] for ln in cli.json("job-run", "hello", "logs")["lines"]]
        assert "cwd /workspace" in lines and "to stderr" in lines
        assert containers(run["run_id"]) == []
    finally:
        worker.stop()
        server.stop()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_partitioned_worker_that_comes_back_kills_the_run_given_up_on(
    yard: tuple[Server, Cli, Worker], tmp_path: Path
) -> None:
    """The agent frozen (SIGSTOP) past 15 s stands for a partition: the server ends its run
    as lost; thawed, the worker learns the run was given up on and kills its process; the run
    stays as the server ended it."""
    _server, cli, worker = yard
    cli.run("deploy", cwd=napper_ws(tmp_path))
    cli.run("launch", "napper")
    run = wait_running_on_worker(cli, worker)
    run_dir = worker.data_dir / "runs" / run["run_id"]
    proc = json.loads((run_dir / "proc.json").read_text())
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        ended = wait_run(cli, "napper", 1, timeout=120)
    finally:
        worker.proc.send_signal(signal.SIGCONT)
    assert ended["status"] == "failed" and ended["reason"].startswith("worker w1 lost")
    until("the given-up run's process is gone", lambda: not group_alive(proc["pgid"]))
    until("its configuration is gone", lambda: not (run_dir / "dlt").exists())
    again = wait_run(cli, "napper", 1)
    assert (again["status"], again["reason"]) == ("failed", ended["reason"])
    assert node(cli, "w1")["state"] == "alive"


def test_waiting_claims_hold_no_thread_so_the_api_answers_and_a_run_goes_out_once(
    tmp_path: Path, cache_home: Path
) -> None:
    """More workers long-polling than the server has request threads (40): while 60 claims
    wait, the API still answers (a claim's wait holds no thread), and a run created then goes
    to exactly one of them."""
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv", DOCKYARD_EMBEDDED_RUNS="off").start()
    try:
        cli = Cli(server, cache_home, tmp_path / "config", "fleet")
        cli.run("deploy", cwd=copy_workspace(WORKSPACES / "basic", tmp_path / "ws"))
        auth = {"Authorization": f"Bearer {worker_token(server)}"}
        names = [f"p{i:02d}" for i in range(60)]
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as http:
            incarnations = {}
            for name in names:
                body = {"name": name, "slots": 1, "host": "h", "pid": 1}
                answer = http.post("/api/v1/worker/register", json=body)
                assert answer.status_code == 200, answer.text
                incarnations[name] = answer.json()["incarnation"]
        answers: dict[str, list[Any]] = {}

        def poll(name: str) -> None:
            body = {"name": name, "incarnation": incarnations[name], "free_slots": 1, "wait_s": 20}
            with httpx.Client(base_url=server.url, headers=auth, timeout=60) as http:
                answer = http.post("/api/v1/worker/claim", json=body)
                assert answer.status_code == 200, answer.text
                answers[name] = answer.json()

        polls = [threading.Thread(target=poll, args=(name,)) for name in names]
        for thread in polls:
            thread.start()
        time.sleep(3)  # the claims reach the server and wait (nothing is pending)
        listed = server.api("GET", "/api/v1/workers")
        assert listed.status_code == 200 and len(listed.json()) >= 60
        assert answers == {}, "a claim returned before anything was pending"
        cli.run("launch", "hello")  # the basic workspace's first job
        for thread in polls:
            thread.join(timeout=60)
        given = {name: runs for name, runs in answers.items() if runs}
        assert len(answers) == 60 and len(given) == 1, given
        [runs] = given.values()
        assert len(runs) == 1 and runs[0]["workspace"] == "fleet"
    finally:
        server.stop()
