"""Controllers on separate hosts: two `dockyard server` processes, each in a network namespace
of its own (tests/netns.py), on one PostgreSQL listening on a third address and one shared data
directory, as docs/scaling.md describes. Real processes, real dlt runs; every outcome counted.

- A controller SIGKILLed with a tick claimed but not committed: the other fires that tick and
  every later one, each exactly once (0 duplicate, 0 lost), and each job's code ran once.
- A controller cut off the network for 30 s while its run runs: the other ends that run
  `failed` with "controller ctl-a lost (last heartbeat …)", once, and never starts it again;
  when the link comes back the cut-off controller kills the process it was no longer allowed to
  watch and is counted alive again.

No timed assertion: generous deadlines; the delays are printed."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dockyard.controller import logs
from tests import netns, pg
from tests.conftest import (
    WORKSPACES,
    Cli,
    Server,
    base_env,
    copy_workspace,
    free_port,
    wait_run,
)
from tests.e2e.test_nodes import until

TICKS = 12
TICK_APART_S = 3


def _unavailable() -> str | None:
    if not (pg.PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {pg.PG_BIN} (tests/setup_machine.sh installs them)"
    return netns.missing()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[netns.Lab, pg.Cluster]]:
    """Hosts ctl-a, ctl-b, w-1, w-2 and w-3, and a PostgreSQL on the lab's gateway address."""
    why = _unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the multi-host tests cannot run in CI: {why}")
        pytest.skip(f"the multi-host tests need root, iproute2 and PostgreSQL: {why}")
    with netns.lab("ctl-a", "ctl-b", "w-1", "w-2", "w-3") as built:
        cluster = pg.Cluster.start(tmp_path_factory.mktemp("lab-pg"), host=built.gateway)
        try:
            yield built, cluster
        finally:
            cluster.stop()


def controller(
    lab: netns.Lab, name: str, tmp: Path, data_dir: Path, db_url: str, **env: str
) -> Server:
    """`dockyard server` inside host `name`, listening on its address."""
    host, port = lab.hosts[name], free_port()
    return Server(
        url=f"http://{host.ip}:{port}",
        data_dir=data_dir,
        log=tmp / f"{name}.log",
        port=port,
        extra_env={
            "DOCKYARD_GITHUB_SWEEP_S": "0",
            "DOCKYARD_DB": db_url,
            "DOCKYARD_NODE_NAME": name,
            **env,
        },
        args=["--host", host.ip],
        wrap=host.argv([]),
    )


def tick_workspace(target: Path, first_at: datetime, dozers: int = 0, doze_s: int = 80) -> Path:
    """TICKS jobs, each firing once, TICK_APART_S apart from `first_at`, a slow one (`dozer`,
    10 minutes) and `dozers` more (`dozer_1` …) printing a numbered line every 0.2 s for
    `doze_s` seconds."""
    ws = copy_workspace(WORKSPACES / "crashy", target)
    jobs = []
    for i in range(TICKS):
        at = (first_at + timedelta(seconds=i * TICK_APART_S)).isoformat()
        jobs.append(
            f'@run.job(trigger="once:{at}")\ndef tick_{i:02d}():\n'
            f'    print("tick {i:02d} ran", flush=True)\n'
        )
    for d in range(1, dozers + 1):
        jobs.append(
            f'@run.job(execute={{"timeout": {{"timeout": 600, "grace_period": 2}}}})\n'
            f"def dozer_{d}():\n"
            f"    for i in range({doze_s * 5}):\n"
            f'        print(f"doze {{i}}", flush=True)\n'
            "        time.sleep(0.2)\n"
        )
    names = [f"tick_{i:02d}" for i in range(TICKS)] + ["dozer"]
    names += [f"dozer_{d}" for d in range(1, dozers + 1)]
    (ws / "__deployment__.py").write_text(
        "import time\n\nfrom dlt.hub import run\n\n\n"
        + "\n\n".join(jobs)
        + '\n\n@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})\n'
        "def dozer():\n"
        "    for i in range(3000):\n"
        '        print(f"doze {i}", flush=True)\n'
        "        time.sleep(0.2)\n\n\n"
        f"__all__ = {names!r}\n"
    )
    return ws


def sys_lines(run_dir: Path) -> list[tuple[str, str]]:
    """(stream, text) of each line of a run's log file."""
    lines = logs.path(run_dir).read_text().splitlines()
    return [(entry["s"], entry["m"]) for entry in map(json.loads, lines)]


def node_state(cli: Cli, name: str) -> str:
    nodes = {n["name"]: n for n in cli.json("worker", "list")}
    return str((nodes.get(name) or {}).get("state"))


def test_a_controller_killed_mid_tick_loses_and_repeats_no_tick(
    lab: tuple[netns.Lab, pg.Cluster], cache_home: Path, tmp_path: Path
) -> None:
    hosts, cluster = lab
    db_url, data_dir = cluster.fresh(migrated=False), tmp_path / "data"
    a = controller(hosts, "ctl-a", tmp_path, data_dir, db_url, DOCKYARD_CRASH_AT="tick_claimed")
    b = controller(hosts, "ctl-b", tmp_path, data_dir, db_url)
    cli = Cli(b, cache_home, tmp_path / "config", "ticks")
    try:
        b.start()
        a.start()
        # the first deploy builds what the jobs need; the second sets the ticks close
        cli.run("deploy", cwd=tick_workspace(tmp_path / "ws1", datetime(2030, 1, 1, tzinfo=UTC)))
        first_at = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
        cli.run("deploy", "--yes", cwd=tick_workspace(tmp_path / "ws2", first_at))
        assert a.proc is not None
        a.proc.wait(timeout=TICKS * TICK_APART_S + 120)  # it dies at the first tick it claims
        died_at = datetime.now(UTC)
        assert a.proc.returncode == -signal.SIGKILL, a.log.read_text()[-3000:]
        a.proc = None

        lags = []
        for i in range(TICKS):
            job = f"tick_{i:02d}"
            run = wait_run(cli, job, 1, timeout=180)
            assert run["status"] == "completed", run
            assert [r["number"] for r in cli.json("job-run", "list", job)] == [1], job
            assert cli.run("logs", job).stdout.count(f"tick {i:02d} ran") == 1, job
            due = datetime.fromisoformat(run["scheduled_for"])
            assert due == first_at + timedelta(seconds=i * TICK_APART_S), run
            lags.append((datetime.fromisoformat(run["created_at"]) - due).total_seconds())
        print(
            f"\nctl-a died {(died_at - first_at).total_seconds():.1f}s after the first tick;"
            f" run records at most {max(lags):.2f}s after their ticks (median"
            f" {sorted(lags)[len(lags) // 2]:.2f}s), all {TICKS} once, by ctl-b"
        )
        assert node_state(cli, "ctl-b") == "alive"
    finally:
        a.stop()
        b.stop()


def test_a_controller_cut_off_loses_its_run_once_and_kills_it_when_back(
    lab: tuple[netns.Lab, pg.Cluster], cache_home: Path, tmp_path: Path
) -> None:
    hosts, cluster = lab
    db_url, data_dir = cluster.fresh(migrated=False), tmp_path / "data"
    a = controller(hosts, "ctl-a", tmp_path, data_dir, db_url)
    b = controller(hosts, "ctl-b", tmp_path, data_dir, db_url)
    cli_a = Cli(a, cache_home, tmp_path / "config", "cut")
    cli_b = Cli(b, cache_home, tmp_path / "config", "cut")
    try:
        a.start()
        cli_a.run("deploy", cwd=tick_workspace(tmp_path / "ws", datetime(2030, 1, 1, tzinfo=UTC)))
        cli_a.run("launch", "dozer")
        dozer = wait_run(cli_a, "dozer", 1, statuses=("running",), timeout=300)
        assert dozer["holder"] == "ctl-a"
        b.start()  # only now: the run is ctl-a's
        until("both alive", lambda: node_state(cli_b, "ctl-a") == "alive")

        hosts.hosts["ctl-a"].cut()
        cut_at = time.monotonic()
        try:
            failed = wait_run(cli_b, "dozer", 1, statuses=("failed",), timeout=120)
            lost_after = time.monotonic() - cut_at
            assert "controller ctl-a lost (last heartbeat" in failed["reason"], failed
            time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
        finally:
            hosts.hosts["ctl-a"].heal()
        run_dir = data_dir / "runs" / dozer["run_id"]
        until(
            "the given-up process killed", lambda: "given up on" in logs.path(run_dir).read_text()
        )
        until("its exit recorded", lambda: (run_dir / "exit.json").exists(), timeout=60)
        until("ctl-a alive again", lambda: node_state(cli_b, "ctl-a") == "alive", timeout=120)

        runs = cli_b.json("job-run", "list", "dozer")
        assert [(r["number"], r["status"]) for r in runs] == [(1, "failed")]
        assert wait_run(cli_b, "dozer", 1)["reason"] == failed["reason"]  # ended once
        starts = [m for s, m in sys_lines(run_dir) if s == "sys" and m.startswith("starting ")]
        assert len(starts) == 1, starts  # one process, never a second start
        cli_b.run("launch", "tick_00")  # the pair carries on
        assert wait_run(cli_b, "tick_00", 1, timeout=180)["status"] == "completed"
        print(f"\nctl-a's run failed as lost {lost_after:.1f}s after the cut")
    finally:
        hosts.hosts["ctl-a"].heal()
        a.stop()
        b.stop()


def start_worker(
    lab: netns.Lab, name: str, server_url: str, token: str, tmp: Path
) -> subprocess.Popen[bytes]:
    """`dockyard worker` on host `name`: one slot, its own data dir, the server behind the
    load balancer."""
    argv = [sys.executable, "-m", "dockyard", "worker", "--server", server_url, "--token", token]
    argv += ["--name", name, "--slots", "1", "--data-dir", str(tmp / name)]
    with (tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            lab.hosts[name].argv(argv), stdout=log, stderr=subprocess.STDOUT, env=base_env()
        )


def dozes(run_dir: Path) -> list[int]:
    """The numbers of the `doze N` lines of a run's log, in order."""
    found = [m for s, m in sys_lines(run_dir) if s == "out" and m.startswith("doze ")]
    return [int(m.split()[1]) for m in found]


def test_two_controllers_three_workers_lose_one_host_of_each_kind_and_carry_on(
    lab: tuple[netns.Lab, pg.Cluster], cache_home: Path, tmp_path: Path
) -> None:
    """docs/scaling.md on one machine: two controllers behind a load balancer, three workers,
    each on a host of its own. While three runs run, one worker's host dies (every process
    on it), another worker is cut off for 30 s, and a controller dies with a tick claimed.
    The dead worker's run and the cut-off worker's run end `failed` with "worker W lost",
    once, never started again, the cut-off one's log complete up to the cut; the third run
    completes whole; every tick fires once and completes on the workers that are left."""
    hosts, cluster = lab
    db_url, data_dir = cluster.fresh(migrated=False), tmp_path / "data"
    off = {"DOCKYARD_EMBEDDED_RUNS": "off"}
    a = controller(
        hosts, "ctl-a", tmp_path, data_dir, db_url, DOCKYARD_CRASH_AT="tick_claimed", **off
    )
    b = controller(hosts, "ctl-b", tmp_path, data_dir, db_url, **off)
    workers: list[subprocess.Popen[bytes]] = []
    balancer: netns.Balancer | None = None
    try:
        a.start()
        b.start()
        backends = [(hosts.hosts[n].ip, s.port) for n, s in (("ctl-a", a), ("ctl-b", b))]
        balancer = netns.Balancer(hosts.gateway, backends)
        front = Server(f"http://{balancer.address}", data_dir, tmp_path / "front.log", 0)
        cli = Cli(front, cache_home, tmp_path / "config", "fleet")
        ws = tick_workspace(tmp_path / "ws1", datetime(2030, 1, 1, tzinfo=UTC), dozers=3)
        cli.run("deploy", cwd=ws)
        token = front.api("POST", "/api/v1/tokens", json={"name": "fleet", "role": "worker"})
        for name in ("w-1", "w-2", "w-3"):
            workers.append(start_worker(hosts, name, front.url, token.json()["token"], tmp_path))
        for name in ("w-1", "w-2", "w-3"):
            until(f"{name} alive", lambda n=name: node_state(cli, n) == "alive")  # type: ignore[misc]
        for d in (1, 2, 3):
            cli.run("launch", f"dozer_{d}")
        running = {
            d: wait_run(cli, f"dozer_{d}", 1, statuses=("running",), timeout=600) for d in (1, 2, 3)
        }
        holders = {d: run["holder"] for d, run in running.items()}
        assert sorted(holders.values()) == ["w-1", "w-2", "w-3"], holders  # one slot each
        dead, cut, spared = holders[1], holders[2], holders[3]
        until(
            "lines from every run",
            lambda: all(len(dozes(data_dir / "runs" / r["run_id"])) > 5 for r in running.values()),
        )

        killed = hosts.hosts[dead].crash()
        hosts.hosts[cut].cut()
        cut_at = time.monotonic()
        first_at = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
        cli.run("deploy", "--yes", cwd=tick_workspace(tmp_path / "ws2", first_at, dozers=3))
        try:
            for d, holder in ((1, dead), (2, cut)):
                failed = wait_run(cli, f"dozer_{d}", 1, statuses=("failed",), timeout=120)
                assert f"worker {holder} lost (last heartbeat" in failed["reason"], failed
            time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
        finally:
            hosts.hosts[cut].heal()
        cut_run = tmp_path / cut / "runs" / running[2]["run_id"]
        until(
            "the cut-off worker killed its run",
            lambda: (cut_run / "exit.json").exists(),
            timeout=120,
        )

        spared_run = wait_run(cli, "dozer_3", 1, timeout=300)
        assert (spared_run["status"], spared_run["holder"]) == ("completed", spared)
        assert dozes(data_dir / "runs" / spared_run["run_id"]) == list(range(400))
        shipped = dozes(data_dir / "runs" / running[2]["run_id"])
        assert shipped == list(range(len(shipped))) and shipped, shipped[:5]  # whole to the cut
        for d in (1, 2):
            assert [r["number"] for r in cli.json("job-run", "list", f"dozer_{d}")] == [1]
        assert a.proc is not None
        a.proc.wait(timeout=TICKS * TICK_APART_S + 120)  # died at the first tick it claimed
        assert a.proc.returncode == -signal.SIGKILL
        a.proc = None
        for i in range(TICKS):
            job = f"tick_{i:02d}"
            run = wait_run(cli, job, 1, timeout=300)
            assert run["status"] == "completed" and run["holder"] in (cut, spared), run
            assert [r["number"] for r in cli.json("job-run", "list", job)] == [1], job
        states = {n: node_state(cli, n) for n in ("ctl-a", "ctl-b", dead, cut, spared)}
        assert states == {
            "ctl-a": "lost",
            "ctl-b": "alive",
            dead: "lost",
            cut: "alive",
            spared: "alive",
        }
        print(
            f"\n{dead}'s host died ({killed} processes), {cut} cut off 30 s, ctl-a died at a"
            f" tick: {len(shipped)} lines of the cut-off run shipped, {TICKS} ticks once each"
        )
    finally:
        for host in hosts.hosts.values():
            host.heal()
        for proc in workers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if balancer is not None:
            balancer.close()
        a.stop()
        b.stop()
