"""Jobs cannot reach the control plane, and every process of a run dies with it (issue 10,
items 1 and 10): real servers, real runs of tests/workspaces/hostile on the local executor."""

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.controller.executors import sandbox
from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run
from tests.e2e.test_docker import docker_engine, docker_server
from tests.security.conftest import probes

__all__ = ["docker_engine"]  # the fixture, shared with the Docker executor's tests

ROOT = os.geteuid() == 0
UID_BASE = 1_800_000_000
SECRET = "s3cr3t-of-the-victim-workspace"


@pytest.fixture
def sandboxed() -> None:
    """These attacks need the sandbox the server would use (bubblewrap): missing, the test
    skips outside CI and fails in CI (tests/setup_machine.sh installs it)."""
    found = sandbox.probe("auto")
    if not found.isolated:
        message = f"no sandbox on this machine: {found.reason}; run tests/setup_machine.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def as_token(cli: Cli, workspace: str, role: str = "deploy") -> Cli:
    """A CLI whose token is limited to `workspace` (made by the admin)."""
    made = cli.json("token", "create", f"{workspace}-{role}", "--role", role, "-w", workspace)
    return Cli(cli.server, cli.cache_home, cli.config_home, workspace, token=made["token"])


def lingering(mark: str) -> list[int]:
    """Processes on this host whose command line carries `mark`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if mark.encode() in cmdline:
                found.append(int(entry))
    return found


def launch(cli: Cli, job: str) -> dict[str, object]:
    cli.run("launch", job)
    return wait_run(cli, job, statuses=("running",))


@pytest.fixture
def victim(cli: Cli, hostile_ws: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Another workspace with a secret, and a run of it in progress: its decrypted
    configuration, data, checkout and repository are what the attacker looks for."""
    victim_ws = copy_workspace(hostile_ws, tmp_path / "victim")
    (victim_ws / ".dlt" / "prod.secrets.toml").write_text(f'[victim]\ntoken = "{SECRET}"\n')
    other = Cli(cli.server, cli.cache_home, cli.config_home, f"{cli.workspace}-v")
    other.run("deploy", cwd=victim_ws)
    run = launch(other, "sandbox_linger_sleep")
    data = cli.server.data_dir
    yield {
        "workspace": other.workspace,
        "configuration": str(data / "runs" / str(run["run_id"]) / "dlt" / "prod.secrets.toml"),
        "data": str(data / "var" / other.workspace),
        "repository": str(data / "repos" / f"{other.workspace}.git" / "config"),
    }
    other.run("cancel", "sandbox_linger_sleep")


def test_job_deployed_with_a_workspace_token_cannot_reach_the_control_plane(
    sandboxed: None, cli: Cli, hostile_ws: Path, victim: dict[str, str]
) -> None:
    """Was: a job read session.key, forged an admin session and minted an admin token; it
    could read master.key, the database, other workspaces' repositories and other runs'
    decrypted configuration."""
    cli.run("workspace", "create", cli.workspace)
    attacker = as_token(cli, cli.workspace)
    targets = [victim["configuration"], victim["data"], victim["repository"]]
    assert Path(victim["configuration"]).exists()  # the victim's secret is on disk right now
    (hostile_ws / "targets.json").write_text(json.dumps({"paths": targets}))
    attacker.run("deploy", cwd=hostile_ws)
    attacker.run("launch", "sandbox_escape")
    run = wait_run(attacker, "sandbox_escape")
    assert run["status"] == "completed", run
    found = probes(attacker, str(run["run_id"]))
    attacks = {
        k: v for k, v in found.items() if k not in ("uid", "priority") and not k.startswith("own_")
    }
    attacks.pop("network")
    assert len(attacks) == 17, found
    assert {k: v for k, v in attacks.items() if v != "denied"} == {}
    assert {k: v for k, v in found.items() if k.startswith("own_")} == {
        "own_configuration": "ok",
        "own_data": "ok",
        "own_tmp": "ok",
        "own_home": "ok",
    }
    assert found["network"] == "ok"
    if ROOT:  # a user of its own, never root
        assert int(found["uid"]) > UID_BASE
    log = attacker.run("logs", "sandbox_escape").stdout
    assert SECRET not in log


def test_admin_token_of_the_server_is_not_in_reach_of_a_job(
    sandboxed: None, server: Server, cli: Cli, hostile_ws: Path
) -> None:
    """Was: a job could read /proc/<server pid>/environ (DOCKYARD_ADMIN_TOKEN) and signal
    the server: the run's PID namespace shows it only its own processes."""
    cli.run("deploy", cwd=hostile_ws)
    cli.run("launch", "sandbox_escape")
    run = wait_run(cli, "sandbox_escape")
    found = probes(cli, str(run["run_id"]))
    assert found["server_environ"] == "denied", found
    # in its own session (bwrap --new-session) a job still yields the CPU to the server:
    # its niceness and, with autogroups, its session's (DOCKYARD_RUN_NICE, default 10)
    niced = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    group = "10" if Path("/proc/self/autogroup").exists() else "none"
    assert found["priority"] == f"{niced}/{group}", found
    assert server.proc is not None
    assert b"DOCKYARD_ADMIN_TOKEN" in Path(f"/proc/{server.proc.pid}/environ").read_bytes()


def mount_point_of_a_live_sandbox(data_dir: Path, path: Path) -> bool:
    """A folder (or empty file) bwrap made in a running sandbox's /tmp (the run's own
    `job/tmp`) to mount the server's folders and files on: only when the data dir itself
    lies under /tmp, as a test's does, and only while that sandbox lives (a warm pool's
    held process, say)."""
    parts = path.relative_to(data_dir).parts
    if len(parts) < 5 or parts[0] != "runs" or parts[2:4] != ("job", "tmp"):
        return False
    seen = Path("/tmp", *parts[4:])
    # what the sandbox mounts: the data dir's folders, and (a checkout under /tmp, as in CI)
    # dockyard's own shim folder; a mount point mirrors a host path that exists
    along = seen in data_dir.parents or seen == data_dir or data_dir in seen.parents
    mirrored = along or seen.exists()
    return mirrored and (path.is_dir() or path.lstat().st_size == 0)  # folders, empty files


def test_data_dir_and_everything_in_it_is_private(tmp_path: Path, cli: Cli) -> None:
    """0700/0600 for all the server creates. Environments keep uv's modes (public packages,
    hardlinked from uv's cache, never writable by others): jobs of every workspace read them,
    reached only through their sandbox, since the data dir itself is 0700."""
    srv = make_server(tmp_path).start()
    try:
        own = Cli(srv, cli.cache_home, tmp_path / "config", "private")
        ws = copy_workspace(Path(__file__).parents[1] / "workspaces" / "hostile", tmp_path / "ws")
        (ws / ".dlt" / "prod.secrets.toml").write_text('[x]\nkey = "value-1234"\n')
        own.run("deploy", cwd=ws)
        own.run("launch", "innocent")
        assert wait_run(own, "innocent")["status"] == "completed"
        assert stat.S_IMODE(srv.data_dir.stat().st_mode) == 0o700
        loose = []
        for root, dirs, files in os.walk(srv.data_dir):
            for name in (*dirs, *files):
                path = Path(root, name)
                mode = path.lstat().st_mode
                public = path.relative_to(srv.data_dir).parts[0] == "envs"
                if mount_point_of_a_live_sandbox(srv.data_dir, path):
                    continue
                if not stat.S_ISLNK(mode) and mode & (0o022 if public else 0o077):
                    loose.append(f"{path} {oct(mode)}")
        assert loose == []
    finally:
        srv.stop()


@pytest.mark.parametrize("ending", ["exit", "cancel", "timeout"])
def test_processes_a_job_leaves_behind_die_with_its_run(
    sandboxed: None, cli: Cli, hostile_ws: Path, ending: str
) -> None:
    """Was: `setsid` and double-forked children survived cancel and timeout."""
    job = f"sandbox_linger_{'sleep' if ending == 'cancel' else ending}"
    cli.run("deploy", cwd=hostile_ws)
    cli.run("launch", job)
    if ending != "exit":
        running = wait_run(cli, job, statuses=("running",))
        mark = f"dockyard-linger-{running['run_id']}"
        deadline = time.monotonic() + 60
        while len(lingering(mark)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(lingering(mark)) >= 3  # they exist: the test can see them
        if ending == "cancel":
            cli.run("cancel", job)
    run = wait_run(cli, job)
    found = probes(cli, str(run["run_id"]))
    assert found["lingering"] == f"dockyard-linger-{run['run_id']}"
    assert lingering(f"dockyard-linger-{run['run_id']}") == []
    expected = {"exit": "completed", "cancel": "cancelled", "timeout": "failed"}[ending]
    assert run["status"] == expected, run


def test_unisolated_server_refuses_a_workspace_token_deploy(
    tmp_path: Path, cli: Cli, hostile_ws: Path
) -> None:
    """Without a sandbox a job can read the server's keys: a token limited to one
    workspace may not deploy to the local executor unless the operator opted in; the
    server says so at start. Lingering processes still die (the supervisor reaps them)."""
    srv = make_server(tmp_path, DOCKYARD_SANDBOX="off").start()
    try:
        assert "NOT isolated" in srv.log.read_text()
        admin = Cli(srv, cli.cache_home, tmp_path / "config", "plain")
        admin.run("workspace", "create", "plain")
        limited = as_token(admin, "plain")
        error = limited.fails("deploy", cwd=hostile_ws)
        assert "cannot isolate jobs" in error and "bubblewrap" in error, error
        assert limited.json("deployment", "list") == []
        admin.run("deploy", cwd=hostile_ws)  # an admin can (and could read the keys anyway)
        admin.run("launch", "sandbox_linger_exit")
        run = wait_run(admin, "sandbox_linger_exit")
        assert run["status"] == "completed", run
        assert lingering(f"dockyard-linger-{run['run_id']}") == []
        assert "killed 3 process" in admin.run("logs", "sandbox_linger_exit").stdout
    finally:
        srv.stop()
    srv = make_server(tmp_path, DOCKYARD_SANDBOX="off", DOCKYARD_UNISOLATED_DEPLOYS="allow")
    srv.start()
    try:
        limited = Cli(srv, cli.cache_home, tmp_path / "config", "plain", token=limited.token)
        (hostile_ws / "attack_smoke.py").write_text(
            (hostile_ws / "attack_smoke.py").read_text() + "\n# changed\n"
        )
        limited.run("deploy", cwd=hostile_ws)
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def docker_cli(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, cache_home: Path
) -> Iterator[Cli]:
    """The hostile workspace deployed to a server whose runs go to Docker."""
    tmp = tmp_path_factory.mktemp("docker-hostile")
    srv = docker_server(tmp / "server")
    try:
        cli = Cli(srv, cache_home, tmp / "config", "hostile-docker")
        ws = copy_workspace(WORKSPACES / "hostile", tmp / "ws")
        # the host's data dir, by name: the container must not have it
        (ws / "targets.json").write_text(json.dumps({"data": str(srv.data_dir)}))
        cli.run("deploy", cwd=ws)
        yield cli
    finally:
        srv.stop()


def test_job_in_a_container_cannot_reach_the_control_plane(docker_cli: Cli) -> None:
    """The same attacks from a container: nothing of the data dir is mounted, the Docker
    socket is not there, the server's processes are in another PID namespace."""
    docker_cli.run("launch", "sandbox_escape")
    run = wait_run(docker_cli, "sandbox_escape", timeout=600)
    assert run["status"] == "completed", run
    found = probes(docker_cli, str(run["run_id"]))
    attacks = {k: v for k, v in found.items() if k not in ("uid", "network", "priority")}
    attacks = {k: v for k, v in attacks.items() if not k.startswith("own_")}
    assert len(attacks) == 14, found
    assert {k: v for k, v in attacks.items() if v != "denied"} == {}
    assert all(found[k] == "ok" for k in ("own_configuration", "own_data", "own_tmp", "own_home"))
    if ROOT:
        assert int(found["uid"]) > UID_BASE


def test_processes_a_container_job_leaves_behind_die_with_its_run(docker_cli: Cli) -> None:
    docker_cli.run("launch", "sandbox_linger_exit")
    run = wait_run(docker_cli, "sandbox_linger_exit", timeout=600)
    assert run["status"] == "completed", run
    mark = f"dockyard-linger-{run['run_id']}"
    assert probes(docker_cli, str(run["run_id"]))["lingering"] == mark
    assert lingering(mark) == []
