"""Dashboard pages on a big workspace: 2,000 jobs and 200,000 runs, through a real server.

Seeding (untimed): a fresh data dir built like the scheduler benchmarks' `World`
(bench/_world.py: a real SQLite file with the real migrations, a real bare repository, the
real reconciler), a committed manifest of 2,000 jobs reconciled (job rows and schedule rows
as a deploy makes them: a third with a daily cron 12 hours away, a third with a follow-up
trigger, a third manual; 20 tags, each job has one or two), then 100 runs per job inserted
with SQLAlchemy core executemany (one run a day per job over 100 days, 90 % completed, 7 %
failed, 3 % skipped) and `job.runs_created` set to match. No run is active, so the runner
has nothing to do.

Timed: a real `python -m dockyard server` on that data dir (bench/_common.py `Server`),
requests over one keep-alive HTTP connection with the admin token as bearer (pages accept it
like the session cookie): the Jobs page (first page of 200; the last page; a text filter that
matches 100 jobs), the Runs page (first page of 100; a page 150,000 runs down, reached by its
keyset cursor; failed runs only; one job's runs), a job's page and the overview. Each page
is requested `-n` times (default 40) after 3 untimed warm-ups, pages interleaved so drift hits
all alike; wall time from sending the request to the full body.
Printed: p50 / p95 / max per page and the overview's size in KB. Targets: Jobs and Runs p95
≤ 300 ms, overview ≤ 200 KB.

Floor: `GET /healthz` on the same connection (the HTTP round trip and routing).

On SQLite and on PostgreSQL (`--db sqlite|postgresql|both`, default both; bench/_pg.py): the
same seed, the server started with `DOCKYARD_DB`.

Usage: python bench/pages.py [-n 40] [--jobs 2000] [--runs-per-job 100] [--db both]
       [--json-out FILE] (with both engines the JSON is SQLite's report, PostgreSQL's under its
       `postgresql` key)
"""

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _pg
import httpx
from _common import Report, int_arg, percentile, print_machine, running_server
from _world import WORKSPACE, job, make_world
from sqlalchemy import insert, select, text, update

from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run
from dockyard.web import formatting

TARGET_P95_S = 0.300
TARGET_OVERVIEW_KB = 200.0
TAGS = [f"team{i:02d}" for i in range(20)]
DEEP = 150_000


def definitions(count: int) -> list[dict[str, Any]]:
    hour = (datetime.now(UTC).hour + 12) % 24
    out = []
    for i in range(count):
        tags = [TAGS[i % 20]] + ([TAGS[(i * 7 + 3) % 20]] if i % 3 == 0 else [])
        if i % 3 == 0:
            triggers = [f"schedule:{i % 60} {hour} * * *"]
        elif i % 3 == 1:
            triggers = [f"job.success:jobs.bench.job_{i - 1:04d}"]
        else:
            triggers = []
        out.append(job(f"job_{i:04d}", triggers, tags=sorted(set(tags))))
    return out


def seed(data_dir: Path, jobs: int, per_job: int, url: str) -> None:
    world = make_world(data_dir, database_url=url)
    try:
        world.deploy(definitions(jobs))
        with world.db.session() as session:
            rows = list(session.execute(select(Job.id, Job.workspace_id, Job.job_ref)))
        insert_runs(world.db, rows, per_job)
        if world.db.is_postgres:
            # what autovacuum does soon after a bulk load: without table statistics the
            # planner expects a few dozen runs and sorts all 200,000 for the newest page
            with world.db.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
    finally:
        world.close()


def insert_runs(db: Database, jobs: list[Any], per_job: int) -> None:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=per_job + 1)
    batch: list[dict[str, Any]] = []
    for job_id, ws_id, _ref in jobs:
        for n in range(1, per_job + 1):
            batch.append(run_row(rng, job_id, ws_id, n, start + timedelta(days=n)))
            if len(batch) >= 20_000:
                _insert(db, batch)
                batch = []
    if batch:
        _insert(db, batch)
    with db.engine.begin() as conn:
        conn.execute(update(Job).values(runs_created=per_job))


def run_row(
    rng: random.Random, job_id: int, ws_id: int, number: int, day: datetime
) -> dict[str, Any]:
    created = day + timedelta(seconds=rng.randrange(86_400))
    roll = rng.random()
    status = "completed" if roll < 0.90 else ("failed" if roll < 0.97 else "skipped")
    started = None if status == "skipped" else created + timedelta(seconds=rng.random())
    return {
        "id": f"{job_id:05d}-{number:04d}-{rng.randrange(16**8):08x}",
        "workspace_id": ws_id,
        "job_id": job_id,
        "number": number,
        "trigger": f"manual:job_{job_id}",
        "status": status,
        "reason": "the upstream is not fresh" if status == "skipped" else None,
        "created_at": created,
        "started_at": started,
        "finished_at": (started or created) + timedelta(seconds=rng.randrange(1, 900)),
        "exit_code": {"completed": 0, "failed": 1}.get(status),
        "profile": "prod",
        "refresh": False,
        "timeout_s": 7200.0,
        "grace_s": 30.0,
    }


def _insert(db: Database, rows: list[dict[str, Any]]) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)  # type: ignore[arg-type]


def deep_cursor(url: str, offset: int) -> str:
    db = Database(url)
    try:
        with db.session() as session:
            created, run_id = session.execute(
                select(Run.created_at, Run.id)
                .order_by(Run.created_at.desc(), Run.id.desc())
                .offset(offset)
                .limit(1)
            ).one()
    finally:
        db.dispose()
    return formatting.encode_cursor(created.isoformat(), run_id)


def measure(client: httpx.Client, pages: dict[str, str], n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in pages}
    for i in range(3 + n):
        for name, path in pages.items():
            start = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
            if i >= 3:
                times[name].append(elapsed)
    return times


def bench(n: int, jobs: int, per_job: int, engine: str) -> Report:
    rep = Report(
        f"dashboard pages, {jobs:,} jobs and {jobs * per_job:,} runs (real server,"
        f" {_pg.describe(engine)})"
    )
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-pages-") as tmp:
        data_dir = Path(tmp) / "data"
        url = _pg.database_url(engine, data_dir)
        began = time.perf_counter()
        seed(data_dir, jobs, per_job, url)
        rep.add("seeding (reconcile + bulk insert) [s]", time.perf_counter() - began)
        cursor = deep_cursor(url, min(DEEP, jobs * per_job - 200))
        ws = f"/ui/w/{WORKSPACE}"
        pages = {
            "floor: /healthz": "/healthz",
            "Jobs": f"{ws}/jobs",
            "Jobs, last page": f"{ws}/jobs?offset={(jobs + (jobs + 2) // 3 - 1) // 200 * 200}",
            "Jobs, text filter": f"{ws}/jobs?q=job_01",
            "Runs, first page": f"{ws}/runs",
            "Runs, page 150,000 runs down": f"{ws}/runs?after={cursor}",
            "Runs, failed only": f"{ws}/runs?status=failed",
            "Runs, one job": f"{ws}/runs?job=job_0042",
            "Job page": f"{ws}/jobs/jobs.bench.job_0042",
            "Overview": ws,
        }
        with running_server(Path(tmp), env={"DOCKYARD_DB": url}) as server:
            headers = {"Authorization": f"Bearer {server.token}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                times = measure(client, pages, n)
                sizes = {name: len(client.get(path).content) for name, path in pages.items()}
    report_figures(rep, times, sizes)
    return rep


def report_figures(rep: Report, times: dict[str, list[float]], sizes: dict[str, int]) -> None:
    for name, values in times.items():
        p50, p95 = percentile(values, 50) * 1000, percentile(values, 95) * 1000
        rep.add(
            f"{name}: p50 / p95 / max [ms], size [KB]",
            f"{p50:.1f} / {p95:.1f} / {max(values) * 1000:.1f}  ({sizes[name] / 1024:.0f} KB,"
            f" n = {len(values)})",
        )
        key = name.split(":")[0].split(",")[0].lower().replace(" ", "_")
        rep.figures[f"{key}_{len(rep.figures)}_p95_s"] = p95 / 1000
    worst = max(percentile(v, 95) for k, v in times.items() if k.startswith(("Jobs", "Runs")))
    overview_kb = sizes["Overview"] / 1024
    rep.add("worst p95 of Jobs and Runs pages [s]", worst, "p95_s")
    rep.add("overview size [KB]", f"{overview_kb:.1f}", "overview_kb")
    rep.figures["overview_kb"] = overview_kb
    rep.add("target", "Jobs/Runs p95 ≤ 0.3 s, overview ≤ 200 KB", "target")
    met = worst <= TARGET_P95_S and overview_kb <= TARGET_OVERVIEW_KB
    rep.add("target met", "yes" if met else "NO", "met")
    rep.figures["met"] = met


def main(argv: list[str]) -> int:
    print_machine()
    n, jobs, other = (
        int_arg(argv, "-n", 40),
        int_arg(argv, "--jobs", 2000),
        int_arg(argv, "--runs-per-job", 100),
    )
    return _pg.report_engines(argv, lambda engine: bench(n, jobs, other, engine))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
