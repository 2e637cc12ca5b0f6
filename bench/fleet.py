"""Workers at scale, on PostgreSQL (issue 14): 10,000 scheduled jobs firing 1,000 runs a minute
for 10 minutes, claimed by 3 workers over HTTP; then real runs on real `dockyard worker`s.

Phase `claim` (the control plane at the full rate). Seeding, untimed: a fresh PostgreSQL
database (bench/_pg.py, durable) and data dir built like the other scheduler benchmarks
(bench/_world.py: real migrations, a real repository, the real reconciler) with `--jobs` job
definitions, job i on `schedule:{i % 10}-59/10 * * * * {(i // 10) % 60}` (6-field cron,
seconds last): every job fires once every 10 minutes, 1,000 of them in each minute, spread over
its seconds. Then real `dockyard server` processes (`--controllers`, default 1) on that data
dir and database with `DOCKYARD_EMBEDDED_RUNS=off`, and `--workers` (default 3) protocol
workers in this process: each registers with a worker token, heartbeats every 5 s, long-polls
`POST /api/v1/worker/claim` with its free slots, and reports each claimed run started and
exited 0 at once. They are real HTTP clients of the real API; they start no job process
(phase `real` does): this phase measures what the controllers do for 1,000 runs a minute.
Measured over `--minutes` whole minutes: tick → run record and tick → claimed by a worker
(p50 / p99 / max, from the rows' own timestamps), the claim call's latency, lost ticks (a
(job, tick) due in the window with no run), duplicates, runs claimed more than once, runs not
completed, and each controller's RSS and CPU. Target: tick → claimed p99 ≤ 250 ms. Floor:
`GET /healthz` from the same clients (an HTTP round trip to the controller).

Phase `real`: one controller, `--real-jobs` (default 20) jobs each firing every minute at its
own second (`schedule:* * * * * {3i % 60}`), deployed with the real CLI, three real `dockyard
worker` processes (2 slots each, local executor, their own data dirs: each fetches the code
over git and builds its environment) on loopback. After a warm-up (every worker has built the
environment), `--real-minutes` whole minutes: tick → claimed and tick → the job's first line
(the job prints it first thing), lost and duplicate runs, runs per worker. Floor:
`python -c "import dlt"` in a worker's environment (what any fresh run start pays).

Usage: python bench/fleet.py [--phase claim|real|both] [--jobs 10000] [--minutes 10]
       [--workers 3] [--slots 16] [--controllers 1] [--real-jobs 20] [--real-minutes 3]
       [--json-out FILE] [--runs-out FILE]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _pg
import httpx
from _common import (
    PYTHON,
    Cli,
    OtherLoad,
    Report,
    Server,
    base_env,
    int_arg,
    json_out,
    percentile,
    print_machine,
    process_cpu_s,
    pyproject,
    write_files,
)
from _world import job, make_world
from sqlalchemy import select

from dockyard.controller import dltadapter
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run

TARGET_CLAIM_P99_S = 0.250
HEARTBEAT_S = 5.0


def arg(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def next_minute(after: datetime) -> datetime:
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


@dataclass
class Sampler:
    """RSS and CPU of the controllers, every 5 s, on a thread of its own."""

    pids: list[int]
    rss: dict[int, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Sampler":
        self.cpu0 = {pid: process_cpu_s(pid) for pid in self.pids}
        self.t0 = time.monotonic()
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(5.0):
            for pid in self.pids:
                self.rss.setdefault(pid, []).append(rss_mib(pid))

    def stop(self) -> dict[int, tuple[float, float, float]]:
        """pid → (RSS max MiB, RSS at the end MiB, CPU % of one core)."""
        self._stop.set()
        wall = time.monotonic() - self.t0
        return {
            pid: (
                max(self.rss.get(pid, [0.0])),
                rss_mib(pid),
                100 * (process_cpu_s(pid) - self.cpu0[pid]) / wall,
            )
            for pid in self.pids
        }


# phase `claim`: protocol workers ---------------------------------------------------------------
@dataclass
class ProtocolWorker:
    """A worker that claims over HTTP and reports every run started and exited 0 at once."""

    name: str
    urls: list[str]
    token: str
    slots: int
    claim_s: list[float] = field(default_factory=list)  # calls that returned runs
    floor_s: list[float] = field(default_factory=list)
    claimed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _busy: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def client(self, i: int = 0) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[i % len(self.urls)],
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def start(self) -> None:
        with self.client() as http:
            answer = http.post(
                "/api/v1/worker/register",
                json={"name": self.name, "slots": self.slots, "host": "bench", "pid": 0},
            )
            answer.raise_for_status()
            self.incarnation = int(answer.json()["incarnation"])
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=self.name)
        threading.Thread(target=self._heartbeats, daemon=True).start()
        threading.Thread(target=self._claims, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)

    def _heartbeats(self) -> None:
        with self.client() as http:
            while not self._stop.wait(HEARTBEAT_S):
                body = {"name": self.name, "incarnation": self.incarnation, "running": []}
                try:
                    if http.post("/api/v1/worker/heartbeat", json=body).status_code != 200:
                        self.errors["heartbeat"] += 1
                except httpx.TransportError:
                    self.errors["heartbeat unreachable"] += 1

    def _claims(self) -> None:
        with self.client() as http:
            while not self._stop.is_set():
                with self._lock:
                    free = self.slots - self._busy
                if free <= 0:
                    time.sleep(0.01)
                    continue
                body = {"name": self.name, "incarnation": self.incarnation, "free_slots": free}
                start = time.perf_counter()
                try:
                    answer = http.post("/api/v1/worker/claim", json={**body, "wait_s": 5})
                except httpx.TransportError:
                    self.errors["claim unreachable"] += 1
                    time.sleep(0.5)
                    continue
                elapsed = time.perf_counter() - start
                if answer.status_code != 200:
                    self.errors[f"claim {answer.status_code}"] += 1
                    time.sleep(0.5)
                    continue
                runs = answer.json()
                if runs:
                    self.claim_s.append(elapsed)
                    start = time.perf_counter()
                    try:
                        http.get("/healthz")
                    except httpx.TransportError:  # the server stops at the window's end
                        return
                    self.floor_s.append(time.perf_counter() - start)
                with self._lock:
                    self._busy += len(runs)
                    self.claimed += len(runs)
                if self._stop.is_set():
                    return  # the window is over: runs claimed now stay as they are
                for assignment in runs:
                    self._pool.submit(self._run, assignment)

    def _run(self, assignment: dict[str, Any]) -> None:
        run_id, epoch = assignment["run_id"], assignment["epoch"]
        try:
            with self.client(hash(run_id)) as http:
                body = {"name": self.name, "epoch": epoch}
                if http.post(f"/api/v1/worker/runs/{run_id}/started", json=body).is_error:
                    self.errors["started"] += 1
                done = http.post(
                    f"/api/v1/worker/runs/{run_id}/exit", json={**body, "returncode": 0}
                )
                if done.is_error:
                    self.errors[f"exit {done.status_code}"] += 1
        finally:
            with self._lock:
                self._busy -= 1


def schedule_of(i: int) -> str:
    return f"schedule:{i % 10}-59/10 * * * * {(i // 10) % 60}"


def seed(data_dir: Path, url: str, jobs: int) -> float:
    world = make_world(data_dir, database_url=url)
    try:
        return world.deploy([job(f"job_{i:05d}", [schedule_of(i)]) for i in range(jobs)])
    finally:
        world.close()


def due_ticks(jobs: int, start: datetime, end: datetime) -> set[tuple[str, datetime]]:
    """(job_ref, tick) of every tick in [start, end)."""
    due = set()
    for i in range(jobs):
        trigger = schedule_of(i)
        tick = dltadapter.next_fire(trigger, start - timedelta(microseconds=1), "UTC")
        while tick < end:
            due.add((f"jobs.bench.job_{i:05d}", tick))
            tick = dltadapter.next_fire(trigger, tick, "UTC")
    return due


def window_runs(url: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        with db.session() as session:
            rows = session.execute(
                select(
                    Job.job_ref,
                    Run.scheduled_for,
                    Run.created_at,
                    Run.claimed_at,
                    Run.status,
                    Run.holder,
                    Run.claim_epoch,
                    Run.id,
                )
                .join(Job, Job.id == Run.job_id)
                .where(Run.scheduled_for >= start, Run.scheduled_for < end)
            )
            keys = ("job_ref", "tick", "created", "claimed", "status", "holder", "epoch", "id")
            return [dict(zip(keys, row, strict=True)) for row in rows]
    finally:
        db.dispose()


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def lags(runs: list[dict[str, Any]], column: str) -> list[float]:
    out = []
    for run in runs:
        at, tick = utc(run[column]), utc(run["tick"])
        if at is not None and tick is not None:
            out.append((at - tick).total_seconds())
    return out


def between(runs: list[dict[str, Any]], first: str, then: str) -> list[float]:
    out = []
    for run in runs:
        a, b = utc(run[first]), utc(run[then])
        if a is not None and b is not None:
            out.append((b - a).total_seconds())
    return out


def add_spread(rep: Report, label: str, values: list[float], key: str | None = None) -> None:
    if values:
        rep.add_spread(label, values, key)
    else:
        rep.add(label, "no samples")


def add_counts(rep: Report, runs: list[dict[str, Any]], due: set[tuple[str, datetime]]) -> None:
    keys = Counter((run["job_ref"], utc(run["tick"])) for run in runs)
    lost = len(due - set(keys))
    duplicates = sum(n - 1 for n in keys.values() if n > 1)
    rep.add("ticks due in the window", len(due), "due")
    rep.add("runs recorded for them", len(runs), "runs")
    rep.add("lost ticks (due, no run)", lost, "lost")
    rep.add("duplicate runs", duplicates, "duplicates")
    rep.add("runs claimed more than once", sum(1 for r in runs if r["epoch"] > 1), "reclaimed")
    statuses = Counter(run["status"] for run in runs)
    rep.add("statuses", dict(statuses), "statuses")
    rep.add("runs per holder", dict(Counter(run["holder"] for run in runs)), "holders")


def claim_phase(argv: list[str]) -> Report:
    jobs, minutes = int_arg(argv, "--jobs", 10000), int_arg(argv, "--minutes", 10)
    workers, slots = int_arg(argv, "--workers", 3), int_arg(argv, "--slots", 16)
    controllers = int_arg(argv, "--controllers", 1)
    runs_out = Path(arg(argv, "--runs-out", "")) if "--runs-out" in argv else None
    rep = Report(
        f"workers: {jobs:,} scheduled jobs, {jobs // 10:,} runs a minute for {minutes} min,"
        f" {workers} protocol workers, {controllers} controller(s), {_pg.describe('postgresql')}"
    )
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-fleet-") as tmp:
        data_dir = Path(tmp) / "data"
        url = _pg.database_url("postgresql", data_dir)
        rep.add("seeding: reconcile of the jobs [s]", seed(data_dir, url, jobs))
        servers = [
            Server(
                data_dir=data_dir,
                log=Path(tmp) / f"ctl-{i}.log",
                extra_env={
                    "DOCKYARD_DB": url,
                    "DOCKYARD_EMBEDDED_RUNS": "off",
                    "DOCKYARD_NODE_NAME": f"ctl-{i}",
                },
            )
            for i in range(controllers)
        ]
        fleet: list[ProtocolWorker] = []
        try:
            for server in servers:
                server.start(timeout=180)
            token = servers[0].api("POST", "/api/v1/tokens", json={"name": "w", "role": "worker"})
            fleet = [
                ProtocolWorker(f"w-{i}", [s.url for s in servers], token["token"], slots)
                for i in range(workers)
            ]
            for worker in fleet:
                worker.start()
            start = next_minute(datetime.now(UTC) + timedelta(seconds=5))
            end = start + timedelta(minutes=minutes)
            time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
            sampler = Sampler([s.proc.pid for s in servers if s.proc]).start()
            other = OtherLoad([os.getpid(), *_pg.postmaster_pids()]).start()
            time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 10)
            usage = sampler.stop()
            other.stop()
            for worker in fleet:
                worker.stop()
        finally:
            for server in servers:
                server.stop()
            if runs_out is not None:  # the controllers' logs beside the rows
                for server in servers:
                    runs_out.with_suffix(f".{server.log.name}").write_bytes(server.log.read_bytes())
                runs_out.with_suffix(".postgres.log").write_bytes(_pg.log())
            if any(w.errors for w in fleet):  # what went wrong, from the controllers' side
                for server in servers:
                    text = server.log.read_text()
                    print(f"--- {server.log.name}\n" + text[text.find("Traceback") :][:30000])
        runs = window_runs(url, start, end)
    if runs_out is not None:  # the rows themselves, to look at where the tail comes from
        rows = [{k: str(v) for k, v in run.items()} for run in runs]
        runs_out.write_text(json.dumps({"runs": rows, "other_load": other.per_s}))
    add_counts(rep, runs, due_ticks(jobs, start, end))
    add_spread(rep, "tick → run record", lags(runs, "created"), "record")
    claimed = lags(runs, "claimed")
    add_spread(rep, "tick → claimed by a worker", claimed, "claimed")
    add_spread(
        rep, "run record → claimed (claim latency)", between(runs, "created", "claimed"), "claim"
    )
    # a claim call waits (long poll) until a run comes: its duration is not the claim's cost
    add_spread(rep, "claim call, long poll included", [s for w in fleet for s in w.claim_s])
    add_spread(rep, "floor: GET /healthz, same clients", [s for w in fleet for s in w.floor_s])
    rep.add("runs claimed by the workers", sum(w.claimed for w in fleet), "claimed_total")
    rep.add("worker errors", dict(sum((w.errors for w in fleet), Counter())), "errors")
    rep.add("other processes on the machine meanwhile (CPU, 1 s samples)", other.summary(), "other")
    for pid, (rss_max, rss_end, cpu) in usage.items():
        rep.add(
            f"controller {pid}: RSS max / end [MiB], CPU [% of a core]",
            f"{rss_max:.0f} / {rss_end:.0f}, {cpu:.0f} %",
        )
        rep.figures.setdefault("controller_rss_max_mib", rss_max)
    p99 = percentile(claimed, 99) if claimed else float("inf")
    rep.add("target", f"tick → claimed p99 ≤ {TARGET_CLAIM_P99_S * 1000:.0f} ms", "target")
    rep.add("target met", "yes" if p99 <= TARGET_CLAIM_P99_S else "NO", "met")
    rep.figures["met"] = p99 <= TARGET_CLAIM_P99_S
    return rep


# phase `real`: dockyard worker processes ---------------------------------------------------------
MARK = "FLEET_USER_CODE"


def real_workspace(root: Path, count: int) -> Path:
    body = [
        '"""Jobs that print the time first thing."""',
        "",
        "import time",
        "",
        "from dlt.hub import run",
        "",
    ]
    for i in range(count):
        body += [
            "",
            f'@run.job(trigger="schedule:* * * * * {3 * i % 60}")',
            f"def job_{i:02d}() -> None:",
            f'    print("{MARK}", time.time(), flush=True)',
            "",
        ]
    names = ", ".join(f'"job_{i:02d}"' for i in range(count))
    module = "\n".join([*body, "", f"__all__ = [{names}]", ""])
    return write_files(root, {"__deployment__.py": module, "pyproject.toml": pyproject("fleet")})


def worker_process(server: Server, token: str, name: str, tmp: Path) -> subprocess.Popen[bytes]:
    argv = [
        PYTHON,
        "-m",
        "dockyard",
        "worker",
        "--server",
        server.url,
        "--token",
        token,
        "--name",
        name,
        "--slots",
        "2",
        "--data-dir",
        str(tmp / name),
    ]
    with (tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=base_env())


def first_line_at(data_dir: Path, run_id: str) -> float | None:
    log = data_dir / "runs" / run_id / "log.jsonl"
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("s") == "out" and MARK in entry.get("m", ""):
            return float(entry["m"].split()[-1])
    return None


def import_dlt_floor(tmp: Path) -> float | None:
    pythons = sorted(tmp.glob("w-*/envs/*/bin/python"))
    if not pythons:
        return None
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([str(pythons[0]), "-c", "import dlt"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_phase(argv: list[str]) -> Report:
    count, minutes = int_arg(argv, "--real-jobs", 20), int_arg(argv, "--real-minutes", 3)
    rep = Report(f"workers: {count} runs a minute on 3 real `dockyard worker`s for {minutes} min")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-fleet-real-") as tmp_s:
        tmp = Path(tmp_s)
        url = _pg.database_url("postgresql", tmp)
        server = Server(
            data_dir=tmp / "data",
            log=tmp / "server.log",
            extra_env={"DOCKYARD_DB": url, "DOCKYARD_EMBEDDED_RUNS": "off"},
        )
        procs: list[subprocess.Popen[bytes]] = []
        try:
            server.start(timeout=180)
            cli = Cli(server, tmp / "home", "fleet")
            token = server.api("POST", "/api/v1/tokens", json={"name": "w", "role": "worker"})
            procs = [worker_process(server, token["token"], f"w-{i}", tmp) for i in range(3)]
            cli.run("deploy", cwd=real_workspace(tmp / "ws", count))
            # warm-up: every worker builds the environment (runs land on whoever claims)
            deadline = time.monotonic() + 600
            while len(list(tmp.glob("w-*/envs/*/bin/python"))) < 3:
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not build their environments")
                time.sleep(2)
            start = next_minute(datetime.now(UTC) + timedelta(seconds=5))
            end = start + timedelta(minutes=minutes)
            time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 30)
            floor = import_dlt_floor(tmp)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            server.stop()
        runs = window_runs(url, start, end)
        user = []
        for run in runs:
            at, tick = first_line_at(tmp / "data", run["id"]), utc(run["tick"])
            if at is not None and tick is not None:
                user.append(at - tick.timestamp())
    due = {
        (f"jobs.__deployment__.job_{i:02d}", start + timedelta(minutes=m, seconds=3 * i % 60))
        for i in range(count)
        for m in range(minutes)
    }
    add_counts(rep, runs, due)
    add_spread(rep, "tick → claimed by a worker", lags(runs, "claimed"), "claimed")
    add_spread(rep, "tick → the job's first line", user, "user_code")
    rep.add("runs whose first line was not found", len(runs) - len(user), "no_first_line")
    if floor is not None:
        rep.add(
            "floor: python -c 'import dlt' in a worker's environment, median [s]",
            floor,
            "floor_import_dlt_s",
        )
    return rep


def main(argv: list[str]) -> int:
    print_machine()
    phase = arg(argv, "--phase", "both")
    reports = []
    if phase in ("claim", "both"):
        reports.append(claim_phase(argv))
    if phase in ("real", "both"):
        reports.append(real_phase(argv))
    for rep in reports:
        rep.show()
    if len(reports) == 2:
        reports[0].figures["real"] = reports[1].figures
    reports[0].write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
