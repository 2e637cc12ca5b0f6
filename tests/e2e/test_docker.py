"""The Docker executor against a real engine: every run in its own container."""

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run

BASE_IMAGE = "dockyard-base:py311"
CA = "/etc/ssl/certs/ca-certificates.crt"
# the workspace's `unbuildable` job requires a package that does not exist, on purpose (its
# image build must fail at run time): deploy's import check would refuse the workspace
SKIP = ("--skip-import-check",)


def engine_ready() -> str | None:
    """None when the engine answers and the base image exists, else what is missing."""
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "no running Docker engine"
    image = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    return None if image.returncode == 0 else f"no base image {BASE_IMAGE}"


@pytest.fixture(scope="module")
def docker_engine() -> None:
    missing = engine_ready()
    if missing is None:
        return
    how = (
        "run tests/setup_machine.sh as root: it installs docker.io, starts dockerd and"
        " builds the base image (scripts/build-base-image.sh)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"Docker tests cannot run in CI: {missing}; {how}")
    pytest.skip(f"Docker tests need a Docker engine: {missing}; {how}")


def docker_server(tmp: Path, **env: str) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    # no registry here: the base image is built offline (scripts/build-base-image.sh)
    extra = {
        "DOCKYARD_EXECUTOR": "docker",
        "DOCKYARD_PREWARM_S": "0",
        # these tests pin cold starts (one container per run, made when it starts);
        # test_docker_warm.py runs the warm pool's held containers
        "DOCKYARD_WARM_POOL_MB": "0",
        "DOCKYARD_DOCKER_BASE_IMAGE": BASE_IMAGE,
    }
    if os.path.exists(CA):
        extra["DOCKYARD_DOCKER_CA_BUNDLE"] = CA
    extra.update(env)
    return make_server(tmp, **extra).start()


@pytest.fixture(scope="module")
def dserver(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = docker_server(tmp_path_factory.mktemp("docker-server"))
    yield srv
    srv.stop()


@pytest.fixture
def dcli(dserver: Server, cache_home: Path, tmp_path: Path) -> Cli:
    cli = Cli(dserver, cache_home, tmp_path / "config", "containers")
    ws = copy_workspace(WORKSPACES / "containers", tmp_path / "containers")
    cli.run("deploy", *SKIP, cwd=ws)
    return cli


def containers(run_id: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=dockyard.run_id={run_id}",
            "--format",
            "{{json .}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_job_runs_in_its_own_container(dcli: Cli) -> None:
    out = dcli.run("launch", "hello", "-f").stdout
    assert "greeting: hello from prod in a container" in out
    assert "cwd /workspace" in out and "to stderr" in out  # the checkout, mounted
    run = dcli.json("job-run", "hello", "info")
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert run["result"]["result"] == {"greeting": "hello from prod in a container"}
    assert containers(run["run_id"]) == []  # removed once its logs were collected
    log = dcli.json("job-run", "hello", "logs")["lines"]
    assert {"s": "err", "m": "to stderr"}.items() <= next(
        ln for ln in log if ln["m"] == "to stderr"
    ).items()


def test_labels_while_running_and_timeout(dcli: Cli) -> None:
    dcli.run("launch", "sleeper")
    run = wait_run(dcli, "sleeper", statuses=("running",))
    (container,) = containers(run["run_id"])
    labels = dict(kv.split("=", 1) for kv in str(container["Labels"]).split(","))
    assert labels["dockyard.workspace"] == "containers"
    assert labels["dockyard.job_ref"] == "jobs.__deployment__.sleeper"
    assert labels["dockyard.deployment"] == run["deployment_version"]
    ended = wait_run(dcli, "sleeper")
    assert ended["status"] == "failed" and ended["reason"] == "timeout"
    started = time.mktime(time.strptime(ended["started_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    finished = time.mktime(time.strptime(ended["finished_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert finished - started <= 3 + 1 + 2 + 1  # timeout + grace + 2 s (+1 s: whole seconds)


def test_images_per_requirement_set(dcli: Cli) -> None:
    envs = {}
    for job in ("hello", "also_plain", "tables"):
        dcli.run("launch", job, "-f")
        envs[job] = dcli.json("job-run", job, "info")["environment"]
    assert envs["hello"] == envs["also_plain"] != envs["tables"]
    table = dcli.run("logs", "tables").stdout  # tabulate, from the `tables` group
    assert "k      v" in table and "a      1" in table


def test_an_image_that_cannot_be_built_fails_the_run_with_its_log(dcli: Cli) -> None:
    dcli.run("launch", "unbuildable")
    ended = wait_run(dcli, "unbuildable", timeout=120)
    assert ended["status"] == "failed" and "image build failed" in ended["reason"]
    log = dcli.run("logs", "unbuildable").stdout
    assert "dockyard-no-such-package-for-tests" in log  # uv's own output, kept on the run


def test_an_interactive_job_is_published_on_loopback(dcli: Cli) -> None:
    import httpx

    served = dcli.json("serve", "tiny_api")
    port = served["entry_point"]["run_args"]["port"]
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "tiny api in a container"
    # and through the server's proxy, like an app of the local executor
    label = f"tiny-api--{dcli.workspace}"
    assert served["url"] == f"http://{label}.apps.localhost:{dcli.server.port}/"
    bearer = {"Authorization": f"Bearer {dcli.server.token}"}
    assert httpx.get(served["url"], headers=bearer, timeout=5).text == "tiny api in a container"
    dcli.run("job-run", "tiny_api", "cancel")
    assert wait_run(dcli, "tiny_api", timeout=60)["status"] == "cancelled"


def test_a_container_killed_from_outside_is_recorded(dcli: Cli) -> None:
    dcli.run("launch", "napper")
    run = wait_run(dcli, "napper", statuses=("running",))
    (container,) = containers(run["run_id"])
    subprocess.run(["docker", "kill", str(container["ID"])], check=True, capture_output=True)
    killed_at = time.time()
    ended = wait_run(dcli, "napper", timeout=30)
    assert ended["status"] == "failed" and ended["reason"] == "killed by signal SIGKILL"
    assert time.time() - killed_at < 10
    finished = (
        time.mktime(time.strptime(ended["finished_at"][:19] + "UTC", "%Y-%m-%dT%H:%M:%S%Z"))
        - time.timezone
    )
    assert finished - killed_at <= 2 + 1  # recorded within 2 s (+1 s: whole seconds)


def test_an_oom_kill_is_reported(dcli: Cli) -> None:
    dcli.run("launch", "hog")
    ended = wait_run(dcli, "hog", timeout=120)
    assert ended["status"] == "failed" and ended["reason"] == "out of memory"


def test_a_restarted_controller_adopts_its_containers(
    docker_engine: None, cache_home: Path, tmp_path: Path
) -> None:
    server = docker_server(tmp_path)
    cli = Cli(server, cache_home, tmp_path / "config", "adopt")
    try:
        cli.run("deploy", *SKIP, cwd=copy_workspace(WORKSPACES / "containers", tmp_path / "ws"))
        cli.run("launch", "counter")
        run = wait_run(cli, "counter", statuses=("running",), timeout=180)
        time.sleep(1.5)
        server.stop(signal.SIGKILL)
        time.sleep(2)
        server.start()
        ended = wait_run(cli, "counter", timeout=60)
        assert ended["status"] == "completed" and ended["run_id"] == run["run_id"]
        lines = [
            ln["m"]
            for ln in cli.json("job-run", "counter", "logs", "--all")["lines"]
            if ln["s"] == "out"
        ]
        assert lines == [f"line {i}" for i in range(60)]  # complete, nothing twice
        assert len(cli.json("job-run", "list", "counter")) == 1
    finally:
        server.stop()


def test_engine_unreachable_and_missing_base_image(
    docker_engine: None, cache_home: Path, tmp_path: Path
) -> None:
    for name, env, reason in (
        (
            "noengine",
            {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
            "docker engine unreachable at unix:///nonexistent/docker.sock",
        ),
        (
            "nobase",
            {"DOCKYARD_DOCKER_BASE_IMAGE": "dockyard-base:missing"},
            "base image dockyard-base:missing not found and could not be pulled",
        ),
    ):
        server = docker_server(tmp_path / name, **env)
        cli = Cli(server, cache_home, tmp_path / name / "config", name)
        try:
            cli.run(
                "deploy",
                *SKIP,
                cwd=copy_workspace(WORKSPACES / "containers", tmp_path / name / "w"),
            )
            cli.run("launch", "hello", check=False)
            ended = wait_run(cli, "hello", timeout=120)
            assert ended["status"] == "failed" and reason in ended["reason"]
            assert server.api("GET", "/healthz").status_code == 200  # still serving
        finally:
            server.stop()


def test_one_workspace_can_choose_docker_on_a_local_server(
    docker_engine: None, cache_home: Path, tmp_path: Path
) -> None:
    server = docker_server(tmp_path, DOCKYARD_EXECUTOR="local")
    cli = Cli(server, cache_home, tmp_path / "config", "choose-docker")
    try:
        _choose_docker(cli, tmp_path)
    finally:
        server.stop()


def _choose_docker(cli: Cli, tmp_path: Path) -> None:
    cli.run("deploy", *SKIP, cwd=copy_workspace(WORKSPACES / "containers", tmp_path / "ws"))
    assert cli.json("info")["effective_executor"] == "local"
    assert "cwd /workspace" not in cli.run("launch", "hello", "-f").stdout
    chosen = cli.json("workspace", "set-executor", "docker")
    assert chosen["executor"] == "docker" and chosen["effective_executor"] == "docker"
    assert "cwd /workspace" in cli.run("launch", "hello", "-f").stdout
    assert cli.json("job-run", "hello", "info")["executor"] == "docker"
    cli.run("workspace", "set-executor", "default")
    assert "cwd /workspace" not in cli.run("launch", "hello", "-f").stdout
    assert cli.json("job-run", "hello", "info")["executor"] == "local"


def test_unused_images_are_collected_newest_use_kept(docker_engine: None, tmp_path: Path) -> None:
    from dockyard.controller.executors.docker import DockerConfig, DockerExecutor

    repo = f"dockyard-gc-test-{os.getpid()}"  # never the images other tests use
    executor = DockerExecutor(
        DockerConfig(BASE_IMAGE, keep_images=2, image_repo=repo, state_dir=tmp_path)
    )
    tags = [f"{repo}:{n}" for n in ("old", "used-long-ago", "mid", "new", "in-container")]
    labels = executor.image_labels("test")  # as the images this server builds
    for tag in tags:  # distinct images, built one after another
        container = executor.client.containers.create(BASE_IMAGE, ["true"])
        container.commit(repository=repo, tag=tag.split(":")[1], conf={"Labels": labels})
        container.remove()
        time.sleep(1.1)  # Created has one-second resolution in some engines
    executor.record_use(f"{repo}:used-long-ago")  # a run started from it just now
    holder = executor.client.containers.create(f"{repo}:in-container", ["true"])
    executor.record_use(f"{repo}:new", at=time.time() + 10)  # the most recent use
    try:
        removed = executor.collect_images()
        left = sorted(t for i in executor.client.images.list(name=repo) for t in i.tags)
        # kept: the two used most recently, and the one a container still needs
        assert left == sorted(f"{repo}:{n}" for n in ("new", "used-long-ago", "in-container"))
        assert sorted(removed) == sorted(f"{repo}:{n}" for n in ("old", "mid"))
    finally:
        holder.remove()
        for image in executor.client.images.list(name=repo):
            executor.client.images.remove(image.id, force=True)


def restart_dockerd() -> None:
    """Stop the engine the way a service manager does (SIGTERM: dockerd stops its
    containers) and start it again with the same command line."""
    pid = int(Path("/var/run/docker.pid").read_text())
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    os.kill(pid, signal.SIGTERM)
    for _ in range(600):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    with open("/tmp/dockyard-dockerd.log", "ab") as out:
        subprocess.Popen(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
    for _ in range(120):
        if engine_ready() is None:
            return
        time.sleep(0.5)
    raise AssertionError("dockerd did not come back within 60 s")


def test_a_run_ends_with_a_reason_when_dockerd_restarts(
    dcli: Cli, cache_home: Path, tmp_path: Path
) -> None:
    """…and another server on the same engine, which sweeps its own containers when the
    engine is back, leaves this server's alone (it removed the next run's container once:
    that run had no folder under the other server's data dir)."""
    if not (os.geteuid() == 0 and Path("/var/run/docker.pid").exists()):
        how = "restarting dockerd needs root and a local engine (/var/run/docker.pid)"
        if os.environ.get("CI"):
            pytest.fail(how)
        pytest.skip(how)
    other = docker_server(tmp_path / "other")
    try:
        neighbour = Cli(other, cache_home, tmp_path / "other-config", "neighbour")
        ws = copy_workspace(WORKSPACES / "containers", tmp_path / "neighbour")
        neighbour.run("deploy", *SKIP, cwd=ws)
        neighbour.run("launch", "also_plain", "-f")  # its Docker executor watches the engine
        _restart_during_a_run(dcli)
    finally:
        other.stop()


def _restart_during_a_run(dcli: Cli) -> None:
    dcli.run("launch", "napper")
    run = wait_run(dcli, "napper", statuses=("running",), timeout=180)
    time.sleep(2)  # some lines in the log
    stopping = datetime.now(UTC)
    restart_dockerd()
    ended = wait_run(dcli, "napper", timeout=60)
    assert ended["run_id"] == run["run_id"] and ended["status"] == "failed"
    assert ended["reason"].startswith("the docker engine stopped or restarted during the run")
    log = dcli.json("job-run", "napper", "logs", "--all")["lines"]
    out = [ln for ln in log if ln["s"] == "out"]
    assert [ln["m"] for ln in out] == [f"nap {i}" for i in range(len(out))]  # no gap, no twice
    # napper lets dlt absorb SIGTERM, so dockerd kills it after its 10 s shutdown timeout:
    # what it printed while the engine's socket was already closed is in the log too
    assert datetime.fromisoformat(out[-1]["t"]) > stopping + timedelta(seconds=5)
    assert containers(run["run_id"]) == []  # removed once its logs were read
    # and the server goes on running containers
    assert "cwd /workspace" in dcli.run("launch", "hello", "-f").stdout


def test_secrets_in_a_container_are_decrypted_and_redacted(
    dserver: Server, cache_home: Path, tmp_path: Path
) -> None:
    import hashlib
    import secrets

    value = "dk-" + secrets.token_hex(16)
    cli = Cli(dserver, cache_home, tmp_path / "config", "docker-secrets")
    ws = copy_workspace(WORKSPACES / "secretive", tmp_path / "ws")
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.api]\nkey = "{value}"\n')
    cli.run("deploy", cwd=ws)
    out = cli.run("launch", "use_secret", "-f").stdout
    run = cli.json("job-run", "use_secret", "info")
    assert run["executor"] == "docker" and run["status"] == "completed"
    assert run["result"]["result"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
    assert "the key is *** (printed on purpose)" in out and value not in out
    stored = (dserver.data_dir / "runs" / run["run_id"] / "log.jsonl").read_text()
    assert value not in stored and "***" in stored
    assert not (dserver.data_dir / "runs" / run["run_id"] / "dlt").exists()  # removed


def test_a_failed_run_in_a_container_has_the_reason_a_local_one_has(
    dserver: Server, cache_home: Path, tmp_path: Path
) -> None:
    """The checkout is at /workspace in the container: the reason still names the
    workspace's file relative to its root (tests/e2e/test_failure_reason.py, locally)."""
    cli = Cli(dserver, cache_home, tmp_path / "config", "failing")
    cli.run("deploy", cwd=copy_workspace(WORKSPACES / "failing", tmp_path / "failing"))
    assert cli.run("launch", "transform", "-f", check=False).returncode == 1
    run = cli.json("job-run", "transform", "info")
    assert run["executor"] == "docker" and run["exit_code"] == 1
    assert run["reason"] == (
        "ModuleNotFoundError: No module named 'ibis_is_not_installed' (usgs/transformations.py:5)"
    )
    assert '  File "usgs/transformations.py", line 5, in <module>' in run["traceback"]
