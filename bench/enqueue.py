"""Enqueue throughput: one trigger of a selector that matches 5,000 jobs, through the API.

A real server process (bench/_server_no_runner.py: the same controller, app and uvicorn as
`python -m dockyard server`, with the runner loop not started, so the triggered runs stay
`pending`: nothing claims them, builds environments or competes for the database while
enqueueing is measured). The workspace, deployed with the real CLI, has 5,000 no-op jobs
tagged `bulk` (the first 1,000 also `n1000`, the first 100 also `n100`), each with a daily
cron at least 12 hours away (jobs with a schedule, as ingestion jobs are; the run's interval
is then computed from the cron) and `execute={"concurrency": None}`, so every repetition
creates `pending` runs (with the default limit of 1, the runs of a second trigger would be
`skipped`, because the first trigger's are still pending).

Timed: `POST /api/v1/workspaces/{ws}/trigger {"selectors": ["tag:…"]}`, from sending the
request to the full response (it lists every run made). After the deploy the bench waits
until the server is idle (at most 0.1 CPU s in 5 s): a deploy makes the runner build the
jobs' environments in the background (`Runner.prebuild`, even with the runner loop stopped),
about 4.5 CPU s over 6 s for this workspace, and requests made meanwhile took 1.7-4.6 s
instead of 0.4 s for 100 runs. Then an untimed `tag:n100` warm-up, `tag:n100` three times
and `tag:n1000` twice (how the rate depends on the number of runs), then `tag:bulk` (all
5,000) N times. Runs per second = runs made / wall time. Every run of one request has the
same `created_at` (the request's one clock read), so the row times cannot be used here.

Floor, interleaved with the `tag:bulk` repetitions, in the server's own SQLite file (opened
by the bench process while the server idles): 5,000 run rows, one per bulk job, inserted with
one executemany in one transaction.

Then, with the server stopped, `usecases.runs.trigger` of `tag:n1000` in-process (a `Controller` on
the same data dir, no HTTP), timed once and profiled once, shows what dominates.

Usage: python bench/enqueue.py [-n 2] [--jobs 5000] [--json-out FILE]
"""

import cProfile
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
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
    pyproject,
    running_server,
    timed,
    wait_idle,
    write_files,
)
from _world import insert_many, run_row
from sqlalchemy import select

from dockyard.controller import auth, usecases
from dockyard.controller.assembly import Controller
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job
from dockyard.settings import Settings

TARGET_RUNS_PER_S = 500.0
WORKSPACE = "bench-bulk"
SUBSETS = {100: 3, 1000: 2}  # tag:n<size> -> repetitions
NO_RUNNER = (str(Path(__file__).resolve().parent / "_server_no_runner.py"),)


def workspace(root: Path, jobs: int) -> Path:
    hour = (datetime.now(UTC).hour + 12) % 24

    def decorator(i: int) -> str:
        tags = ["bulk"] + [f"n{n}" for n in SUBSETS if i < n]
        return (
            f'trigger="{i % 60} {hour} * * *", expose={{"tags": {tags!r}}},'
            ' execute={"concurrency": None}'
        )

    return write_files(
        root,
        {
            ".dlt/.workspace": "",
            "pyproject.toml": pyproject("bulk"),
            "__deployment__.py": jobs_module(jobs, decorator),
        },
    )


def trigger(server: Server, selector: str, expected: int) -> tuple[float, int]:
    """Wall seconds of one trigger request and the size of its response in bytes."""
    start = time.perf_counter()
    response = httpx.post(
        f"{server.url}/api/v1/workspaces/{WORKSPACE}/trigger",
        json={"selectors": [selector]},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=1800,
    )
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    made = [t for t in response.json()["triggered"] if t["status"] == "triggered"]
    if len(made) != expected:
        raise RuntimeError(f"{selector}: expected {expected} pending runs, got {len(made)}")
    return elapsed, len(response.content)


def bulk_jobs(db: Database) -> list[Job]:
    with db.session() as session:
        return list(session.scalars(select(Job).where(Job.job_ref.like("%.job\\_%", escape="\\"))))


def floor_once(db: Database, jobs: list[Job], rep: int) -> float:
    at = datetime.now(UTC)
    rows = [{**run_row(j, 10_000_000 + rep, at), "status": "cancelled"} for j in jobs]
    return insert_many(db, rows)


def measure_server(tmp: Path, jobs: int, repeat: int) -> dict[str, Any]:
    ws = workspace(tmp / "bulk", jobs)
    with running_server(tmp, NO_RUNNER) as server:
        cli = Cli(server, tmp / "home", WORKSPACE)
        deploy_s, _ = timed(lambda: cli.run("deploy", cwd=ws))
        db = Database(f"sqlite:///{server.data_dir / 'dockyard.db'}")
        bulk = bulk_jobs(db)
        assert server.proc is not None
        settle = wait_idle(server.proc.pid)  # the environment prebuild after the deploy
        meter = MachineCpu()
        trigger(server, "tag:n100", 100)  # warm-up
        subsets = {
            n: [trigger(server, f"tag:n{n}", n)[0] for _ in range(reps)]
            for n, reps in SUBSETS.items()
        }
        walls, floors, sizes = [], [], []
        for rep in range(repeat):
            floors.append(floor_once(db, bulk, rep))
            wall, size = trigger(server, "tag:bulk", jobs)
            walls.append(wall)
            sizes.append(size)
        busy = meter.describe()
        db.dispose()
        data_dir = server.data_dir
    return {
        "deploy_s": deploy_s,
        "walls": walls,
        "floors": floors,
        "subsets": subsets,
        "size": median(sizes),
        "data_dir": data_dir,
        "jobs_in_db": len(bulk),
        "busy": busy,
        "settle": settle,
    }


PROFILED = (
    ("usecases.runs.trigger in all", "controller/usecases/runs.py", "trigger"),
    (
        "  runs.select_jobs (loads the jobs, dlt selector matching)",
        "controller/runs.py",
        "select_jobs",
    ),
    ("  Lifecycle.create", "controller/lifecycle/writer.py", "create"),
    ("    Lifecycle._row (number UPDATE, INSERT, flush)", "controller/lifecycle/writer.py", "_row"),
    (
        "      SQLAlchemy 'evaluate' sync of the UPDATE over the session's objects",
        "sqlalchemy/orm/bulk_persistence.py",
        "_get_matched_objects_on_criteria",
    ),
    ("    rules.window (croniter)", "controller/lifecycle/rules.py", "window"),
    ("    facts.read (active runs SELECT, ledger)", "controller/lifecycle/facts.py", "read"),
    ("  runs.as_dict (response rows)", "controller/runs.py", "as_dict"),
)


def in_process(data_dir: Path, selector: str) -> dict[str, Any]:
    """`usecases.runs.trigger` without HTTP: timed once, then profiled once."""
    ctl = Controller(Settings(data_dir=data_dir, start_loops=False))
    admin = auth.Principal(0, "admin", None)
    try:
        wall, _ = timed(lambda: usecases.runs.trigger(ctl, admin, WORKSPACE, [selector]))
        profiler = cProfile.Profile()
        profiler.runcall(usecases.runs.trigger, ctl, admin, WORKSPACE, [selector])
    finally:
        ctl.db.dispose()
    stats: Any = pstats.Stats(profiler)
    parts = {
        label: sum(
            row[3]
            for (path, _line, name), row in stats.stats.items()
            if name == function and path.endswith(suffix)
        )
        for label, suffix, function in PROFILED
    }
    return {"wall_s": wall, "parts": parts}


def report(case: dict[str, Any], local: dict[str, Any], jobs: int) -> Report:
    rep = Report(f"enqueue: trigger tag:bulk matching {jobs:,} jobs (API, runner not started)")
    rep.figures["floor"] = f"{jobs:,} run rows, one executemany (same SQLite file)"
    walls, floors = case["walls"], case["floors"]
    wall, low = median(walls), median(floors)
    rate = jobs / wall
    rep.add("bulk jobs in the workspace", case["jobs_in_db"])
    rep.add("CLI deploy of the workspace [s]", case["deploy_s"], "deploy_s")
    waited, used = case["settle"]
    rep.add(
        "after the deploy: waited until idle [s] / server CPU meanwhile [s]",
        f"{waited:.0f} / {used:.2f}",
    )
    for n, values in case["subsets"].items():
        rates = ", ".join(f"{n / v:.0f}" for v in values)
        rep.add(f"tag:n{n} ({n:,} runs): median wall [s]", median(values))
        rep.add("  runs per second, each repetition", rates)
        rep.figures[f"n{n}_s"] = values
    rep.add(
        f"tag:bulk ({jobs:,} runs): wall per repetition [s]", ", ".join(f"{w:.1f}" for w in walls)
    )
    rep.add("  median [s]", wall)
    rep.add("  runs created per second (median)", f"{rate:.0f}", "runs_per_s")
    rep.add(f"floor: {jobs:,} rows, one executemany, median [s]", low)
    rep.add("  floor rows per second", f"{jobs / low:.0f}")
    rep.add("ratio median / floor", f"{wall / low:.0f}")
    rep.add("response size [MB]", f"{case['size'] / 1e6:.1f}")
    rep.add("machine CPU busy while triggering", case["busy"])
    rep.add(
        "in-process usecases.runs.trigger tag:n1000 (no HTTP) [s]", local["wall_s"], "in_process_s"
    )
    for label, seconds in local["parts"].items():
        rep.add(f"cProfile (tag:n1000): {label} [s]", seconds)
    rep.figures.update(
        samples=walls,
        floor_samples=floors,
        median_s=wall,
        floor_median_s=low,
        difference_s=wall - low,
        ratio=wall / low,
        target=f"≥ {TARGET_RUNS_PER_S:g} runs/s",
        met=rate >= TARGET_RUNS_PER_S,
        headline=f"{rate:.0f} runs/s",
        profile=local["parts"],
    )
    rep.add("target", f"≥ {TARGET_RUNS_PER_S:g} runs/s")
    rep.add("target met", "yes" if rate >= TARGET_RUNS_PER_S else "NO")
    return rep


def main(argv: list[str]) -> int:
    print_machine()
    jobs = int_arg(argv, "--jobs", 5000)
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        case = measure_server(Path(tmp_name), jobs, int_arg(argv, "-n", 2))
        local = in_process(case["data_dir"], "tag:n1000")
    rep = report(case, local, jobs)
    print_machine()
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
