"""Scheduler CPU per idle minute with 5,000 schedules, against the same server without them.

Real `python -m dockyard server` processes (bench/_common.py), each with its own data dir,
all running at the same time so that they are measured over the same minutes:

- scheduled   5,000 no-op jobs deployed with the real CLI, each with a daily cron
              (`schedule:M H * * *`) 12 hours away, so nothing ticks while measuring:
              5,000 schedule rows;
- floor       the same 5,000 jobs without a timed trigger: 0 schedules, same job rows,
              same manifest size (what the schedules add, and nothing else);
- empty       a server with no workspace at all (for information: the cost of an idle
              server as such);
- uvicorn     a FastAPI app with only `/healthz`, served by uvicorn (bench/_server_bare.py):
              the web server's own idle cost (uvicorn wakes every 0.1 s).

After the deploys, the bench waits until every server is idle (at most 0.1 CPU s in 5 s; a
deploy makes the runner build the jobs' environments in the background). Then the CPU time
(utime + stime of the server process, all threads, /proc/<pid>/stat) is read at the start
and end of WINDOWS (3) windows of WINDOW_S (60) seconds; the bench process only sleeps
meanwhile. Reported: CPU seconds per idle minute, median over the windows, per server, and
the difference.

What an idle server does, measured in-process afterwards on the scheduled server's data dir
(a `Controller` that is not started, CPU time with `time.process_time`): one runner tick
(it polls every 0.5 s: stuck-run bound, claim, watch), one reconcile sweep (every 5 s) and
one `Scheduler.seconds_to_next` (the scheduler's only work when nothing is due, done when it
wakes: at the latest every 300 s).

Usage: python bench/scheduler_idle.py [--jobs 5000] [--windows 3] [--window 60]
                                      [--json-out FILE]
"""

import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    Cli,
    MachineCpu,
    Report,
    Server,
    int_arg,
    jobs_module,
    json_out,
    median,
    print_machine,
    process_cpu_s,
    pyproject,
    wait_idle,
    write_files,
)
from sqlalchemy import func, select

from dockyard.clock import SystemClock
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Job, Schedule
from dockyard.settings import Settings

WORKSPACE = "bench-idle"
CASES = ("scheduled", "floor", "empty", "uvicorn")
BARE = (str(Path(__file__).resolve().parent / "_server_bare.py"),)


def workspace(root: Path, jobs: int, scheduled: bool) -> Path:
    hour = (datetime.now(UTC).hour + 12) % 24

    def decorator(i: int) -> str:
        return f'trigger="{i % 60} {hour} * * *"' if scheduled else ""

    return write_files(
        root,
        {
            ".dlt/.workspace": "",
            "pyproject.toml": pyproject("idle"),
            "__deployment__.py": jobs_module(jobs, decorator),
        },
    )


def start_servers(tmp: Path, jobs: int) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    try:
        for case in CASES:
            server = Server(data_dir=tmp / case / "data", log=tmp / f"{case}.log")
            if case == "uvicorn":
                server.command = BARE
            servers[case] = server.start()
        for case in ("scheduled", "floor"):
            ws = workspace(tmp / case / "ws", jobs, scheduled=case == "scheduled")
            Cli(servers[case], tmp / case / "home", WORKSPACE).run("deploy", cwd=ws)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def counts(server: Server) -> tuple[int, int]:
    """(active jobs, schedule rows with a next fire time) in the server's database."""
    from dockyard.controller.store.db import Database

    db = Database(f"sqlite:///{server.data_dir / 'dockyard.db'}")
    try:
        with db.session() as session:
            jobs = session.scalar(select(func.count(Job.id)).where(Job.status == "active"))
            rows = session.scalar(
                select(func.count(Schedule.id)).where(Schedule.next_fire_at.is_not(None))
            )
            soonest = session.scalar(select(func.min(Schedule.next_fire_at)))
    finally:
        db.dispose()
    if soonest is not None and (soonest - datetime.now(UTC)).total_seconds() < 3600:
        raise RuntimeError(f"a schedule fires within the hour ({soonest}): not idle")
    return int(jobs or 0), int(rows or 0)


def measure(servers: dict[str, Server], windows: int, window_s: float) -> dict[str, Any]:
    pids = {case: s.proc.pid for case, s in servers.items() if s.proc is not None}
    cpu: dict[str, list[float]] = {case: [] for case in pids}
    loads, busy = [], []
    for _ in range(windows):
        loads.append(Path("/proc/loadavg").read_text().split()[0])
        meter = MachineCpu()
        before = {case: process_cpu_s(pid) for case, pid in pids.items()}
        time.sleep(window_s)
        for case, pid in pids.items():
            used = process_cpu_s(pid) - before[case]
            cpu[case].append(used * 60.0 / window_s)
        busy.append(meter.busy_percent())
    return {"cpu": cpu, "loads": loads, "busy": busy}


def cpu_of(func: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds (this process) of one call."""
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        func()
        samples.append(time.process_time() - start)
    return median(samples)


def idle_parts(data_dir: Path) -> dict[str, float]:
    ctl = Controller(Settings(data_dir=data_dir, start_loops=False))
    clock = SystemClock()
    try:
        ctl.runner.tick()  # warm-up
        return {
            "runner tick": cpu_of(ctl.runner.tick, 200),
            "reconcile sweep": cpu_of(ctl.reconciler.sweep, 50),
            "scheduler seconds_to_next": cpu_of(
                lambda: ctl.scheduler.seconds_to_next(clock.now()), 50
            ),
        }
    finally:
        ctl.db.dispose()


def report(
    result: dict[str, Any], info: dict[str, tuple[int, int]], parts: dict[str, float]
) -> Report:
    rep = Report("scheduler CPU per idle minute, 5,000 schedules (server processes)")
    rep.figures["floor"] = "same 5,000 jobs without timed triggers (0 schedules)"
    cpu = result["cpu"]
    for case in CASES:
        jobs, rows = info[case]
        label = f"{case}: {jobs:,} active jobs, {rows:,} schedules"
        if case == "uvicorn":
            label = "uvicorn alone (FastAPI, /healthz only)"
        values = ", ".join(f"{v:.3f}" for v in cpu[case])
        rep.add(f"{label}: CPU s per idle minute", f"median {median(cpu[case]):.3f}  ({values})")
        rep.figures[f"{case}_cpu_s_per_min"] = cpu[case]
    scheduled, floor = median(cpu["scheduled"]), median(cpu["floor"])
    rep.add("difference scheduled - floor, CPU s per minute", f"{scheduled - floor:+.3f}")
    rep.add("ratio scheduled / floor", f"{scheduled / floor:.2f}")
    rep.add(
        "after the deploys: waited until idle [s] / CPU meanwhile [s]",
        ", ".join(f"{c} {w:.0f} / {u:.2f}" for c, (w, u) in result["settle"].items()),
    )
    rep.add("windows (each)", f"{len(cpu['scheduled'])} x {result['window_s']:g} s")
    rep.add("load average (1 min) at each window's start", ", ".join(result["loads"]))
    rep.add(
        "machine CPU busy per window (all processes)",
        ", ".join(f"{b:.0f} %" for b in result["busy"]) + f" of {os.cpu_count()} cores",
    )
    per_min = {"runner tick": 120, "reconcile sweep": 12, "scheduler seconds_to_next": 0.2}
    for name, seconds in parts.items():
        rep.add(
            f"in-process: one {name}, CPU [ms] (x {per_min[name]:g} per minute)",
            f"{seconds * 1000:.2f}",
        )
    predicted = sum(parts[name] * per_min[name] for name in parts)
    rep.add("  predicted CPU s per idle minute from these", f"{predicted:.3f}")
    rep.figures.update(
        median_s=scheduled,
        floor_median_s=floor,
        difference_s=scheduled - floor,
        ratio=scheduled / floor,
        target="(none: report)",
        headline=f"{scheduled:.3f} CPU s/min (floor {floor:.3f})",
        parts=parts,
    )
    return rep


def main(argv: list[str]) -> int:
    print_machine()
    jobs = int_arg(argv, "--jobs", 5000)
    windows, window_s = int_arg(argv, "--windows", 3), float(int_arg(argv, "--window", 60))
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        servers = start_servers(tmp, jobs)
        try:
            info = {case: counts(servers[case]) for case in CASES if case != "uvicorn"}
            info["uvicorn"] = (0, 0)
            settle = {case: wait_idle(s.proc.pid) for case, s in servers.items() if s.proc}
            result = measure(servers, windows, window_s)
            result["window_s"] = window_s
            result["settle"] = settle
        finally:
            for server in servers.values():
                server.stop()
        parts = idle_parts(servers["scheduled"].data_dir)
    rep = report(result, info, parts)
    print_machine()
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
