"""Log lines: the API while a job prints a 300 MB line without a newline (issue 10, item 7).

A real server and the real CLI, for each executor (Docker when an engine and the base image
`dockyard-base:py311` are there). A job prints `BEFORE`, then 300 MB on stdout in 1 MiB
writes without a newline, then `AFTER`. In each round, interleaved:

- API latency: sequential `GET /api/v1/workspaces/{ws}/runs` (one keep-alive client) while
  the line goes through (from the `BEFORE` line's time to the moment `AFTER` is in the log),
  against the same calls for as long with no job running (the floor). Target: p50 within
  5 ms of the floor's (unchanged within noise).
- The time to swallow the line: `BEFORE`'s time → `AFTER` readable in the run's log.
- Memory: the supervisor's peak RSS (VmHWM, local executor: it splits the output) and the
  server's peak RSS growth and CPU seconds over the round (Docker: the server splits it).

Usage: python bench/loglines.py [-n 3] [--mb 300] [--executors local,docker] [--json-out FILE]
"""

import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _common import (
    Cli,
    Report,
    Server,
    int_arg,
    json_out,
    percentile,
    print_machine,
    process_cpu_s,
    pyproject,
    running_server,
    write_files,
)

BASE = "dockyard-base:py311"
CA = "/etc/ssl/certs/ca-certificates.crt"
GIVE_UP_S = 900.0  # a line not in the log by then is reported as never
DEPLOYMENT = '''"""A job that prints one huge line."""

import sys

from dlt.hub import run


@run.job
def huge_line() -> None:
    print("BEFORE", flush=True)
    chunk = b"x" * (1 << 20)
    for _ in range({mb}):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    sys.stdout.buffer.write(b"\\nAFTER\\n")
    sys.stdout.buffer.flush()


__all__ = ["huge_line"]
'''


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class Sampler:
    """Sequential API calls on one keep-alive connection, each recorded as (start, seconds)."""

    server: Server
    path: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.token}"}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=120) as client:
            while not self._stop.is_set():
                began = time.time()
                client.get(self.path).raise_for_status()
                self.samples.append((began, time.time() - began))

    def during(self, seconds: float) -> list[float]:
        thread = self.start()
        time.sleep(seconds)
        self.stop(thread)
        return [d for _, d in self.samples]

    def start(self) -> threading.Thread:
        self.samples.clear()
        self._stop.clear()
        thread = threading.Thread(target=self.run)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> None:
        self._stop.set()
        thread.join()


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def log_lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(raw) for raw in path.read_bytes().splitlines() if raw]
    except (OSError, ValueError):
        return []


@dataclass
class Round:
    latency: list[float]
    floor: list[float]
    swallow_s: float | None  # BEFORE's time -> AFTER readable in the log (None: never)
    lag_s: float | None  # AFTER's own time -> readable in the log
    supervisor_mb: float | None
    server_growth_mb: float
    server_cpu: float  # CPU seconds per second while the line goes through
    floor_cpu: float  # and with no job running (the API calls cost some)


def one_round(server: Server, cli: Cli, sampler: Sampler, floor_s: float) -> Round:
    assert server.proc is not None
    pid = server.proc.pid
    cpu, began = process_cpu_s(pid), time.time()
    floor = sampler.during(floor_s)
    floor_cpu = (process_cpu_s(pid) - cpu) / (time.time() - began)
    rss_before = peak_rss_mb(pid) or 0.0
    thread = sampler.start()
    run = cli.json("launch", "huge_line")
    run_dir = server.data_dir / "runs" / run["run_id"]
    supervisor_mb: float | None = None
    before = after = stamped = None
    cpu = seen = 0.0
    give_up = time.time() + GIVE_UP_S
    while after is None and time.time() < give_up:
        time.sleep(0.1)
        proc = run_dir / "proc.json"
        if proc.exists() and "supervisor_pid" in (data := json.loads(proc.read_text())):
            supervisor_mb = peak_rss_mb(data["supervisor_pid"]) or supervisor_mb
        for line in log_lines(run_dir / "log.jsonl"):
            if line.get("m") == "BEFORE" and before is None:
                before, cpu, seen = ts(line["t"]), process_cpu_s(pid), time.time()
            elif line.get("m") == "AFTER":
                after, stamped = time.time(), ts(line["t"])
    ended = after or time.time()
    server_cpu = (process_cpu_s(pid) - cpu) / max(0.1, ended - seen)
    sampler.stop(thread)
    assert before is not None, "the job did not start"
    latency = [d for began, d in sampler.samples if before <= began <= ended]
    while cli.json("job-run", "huge_line", str(run["number"]), "info")["finished_at"] is None:
        time.sleep(0.2)
    growth = (peak_rss_mb(pid) or 0.0) - rss_before
    swallow = None if after is None else after - before
    lag = None if after is None or stamped is None else after - stamped
    return Round(latency, floor, swallow, lag, supervisor_mb, growth, server_cpu, floor_cpu)


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def docker_ready() -> bool:
    try:
        subprocess.run(["docker", "image", "inspect", BASE], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def bench(executor: str, repeat: int, mb: int) -> Report:
    env = {"DOCKYARD_EXECUTOR": executor}
    if executor == "docker":
        env.update(DOCKYARD_DOCKER_BASE_IMAGE=BASE, DOCKYARD_DOCKER_CA_BUNDLE=CA)
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        files = {
            ".dlt/.workspace": "",
            "pyproject.toml": pyproject("loglines"),
            "__deployment__.py": DEPLOYMENT.replace("{mb}", str(mb)),
        }
        ws = write_files(tmp / "ws", files)
        with running_server(tmp, env=env) as server:
            cli = Cli(server, tmp / "home", "bench-loglines")
            cli.run("deploy", cwd=ws)
            sampler = Sampler(server, f"/api/v1/workspaces/{cli.workspace}/runs")
            rounds = [one_round(server, cli, sampler, 2.0)]  # builds the environment
            for _ in range(repeat):  # each floor lasts as long as the last line took
                rounds.append(one_round(server, cli, sampler, max(3.0, rounds[-1].swallow_s or 30)))
            rounds.pop(0)
    return report(executor, mb, rounds)


def report(executor: str, mb: int, rounds: list[Round]) -> Report:
    latency = [d for r in rounds for d in r.latency]
    floor = [d for r in rounds for d in r.floor]
    rep = Report(f"log lines ({executor} executor): API latency while a job prints a {mb} MB line")
    rep.figures["floor"] = "the same calls, for as long, with no job running"
    rep.add_spread("GET …/runs while the line goes through", latency, "latency")
    rep.add_spread("GET …/runs, floor", floor, "floor")
    p50, floor50 = percentile(latency, 50), percentile(floor, 50)
    rep.add(
        "p95 while / p95 floor [ms]",
        f"{percentile(latency, 95) * 1000:.1f} / {percentile(floor, 95) * 1000:.1f}",
    )
    rep.figures["p95_s"], rep.figures["floor_p95_s"] = (
        percentile(latency, 95),
        percentile(floor, 95),
    )
    rep.figures["median_s"], rep.figures["floor_median_s"] = p50, floor50
    rep.figures["difference_s"], rep.figures["ratio"] = p50 - floor50, p50 / floor50
    rep.add("target", "p50 ≤ floor p50 + 5 ms", "target")
    rep.add("target met", "yes" if p50 - floor50 <= 0.005 else "NO", "met")
    rep.figures["met"] = p50 - floor50 <= 0.005
    swallow = [r.swallow_s for r in rounds]
    rep.add("time to swallow the line, per round [s]", " / ".join(map(seconds, swallow)))
    rep.figures["swallow_s"] = swallow
    lag = [r.lag_s for r in rounds]
    rep.add("  of which after the job's last line [s]", " / ".join(map(seconds, lag)))
    rep.figures["lag_s"] = lag
    if executor == "local":
        peaks = [r.supervisor_mb or 0.0 for r in rounds]
        rep.add("supervisor peak RSS, per round [MB]", " / ".join(f"{p:.1f}" for p in peaks))
        rep.figures["supervisor_peak_mb"] = peaks
    growth = [r.server_growth_mb for r in rounds]
    rep.add("server peak RSS growth, per round [MB]", " / ".join(f"{g:.1f}" for g in growth))
    rep.figures["server_growth_mb"] = growth
    cpu = " / ".join(f"{r.server_cpu:.2f} vs {r.floor_cpu:.2f}" for r in rounds)
    rep.add("server CPU while the line goes through vs floor [s/s]", cpu)
    rep.figures["server_cpu_per_s"] = [r.server_cpu for r in rounds]
    rep.figures["floor_cpu_per_s"] = [r.floor_cpu for r in rounds]
    rep.figures["headline"] = (
        f"p50 {p50 * 1000:.1f} vs {floor50 * 1000:.1f} ms; swallow {seconds(swallow[0])} s"
    )
    return rep


def main(argv: list[str]) -> int:
    repeat = int_arg(argv, "-n", 3)
    mb = int_arg(argv, "--mb", 300)
    executors = ["local", "docker"]
    if "--executors" in argv:
        executors = argv[argv.index("--executors") + 1].split(",")
    print_machine()
    reports = []
    for executor in executors:
        if executor == "docker" and not docker_ready():
            print(f"skipping the docker executor: no engine or no {BASE} image")
            continue
        rep = bench(executor, repeat, mb)
        rep.show()
        reports.append(rep)
    out = json_out(argv)
    if out is not None and reports:  # run_all.py reads one report: the last one
        merged = Report(" + ".join(r.name for r in reports))
        for rep in reports:
            merged.rows += rep.rows
            prefix = rep.name.split("(")[1].split()[0]
            merged.figures.update({f"{prefix}_{k}": v for k, v in rep.figures.items()})
        last = reports[-1].figures
        merged.figures.update(
            {
                k: last[k]
                for k in (
                    "median_s",
                    "floor_median_s",
                    "difference_s",
                    "ratio",
                    "target",
                    "met",
                    "headline",
                    "floor",
                )
                if k in last
            }
        )
        merged.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
