"""Reconcile a 1,000-job manifest in which 10 jobs changed, in-process (no server), on SQLite
and on PostgreSQL (`--db sqlite|postgresql|both`, default both; bench/_pg.py).

Each repetition builds a fresh database and bare workspace repository, commits a
canonical manifest of 1,000 job definitions (plus `requirements.json` and `code/bench.py`),
reconciles it (1,000 added), commits the same manifest with 10 jobs changed and times the
second `Reconciler.reconcile`. A `before_cursor_execute` listener counts the statements of
that second reconcile: INSERT/UPDATE/DELETE per table, executemany parameter sets included.
The 990 unchanged jobs must cost zero row writes.

Floor, same process, same data: parse the new manifest (`manifests.load_yaml`) and plan it
against the deployed jobs' fingerprints (`planning.plan_from_fingerprints`), i.e. what any
reconcile has to do before touching the database. (The controller keeps one fingerprint per
job row, so it never parses the old manifest again.)

Usage: python bench/reconcile.py [-n 7] [--jobs 1000] [--changed 10] [--db both] [--json-out FILE]
(with both engines the JSON is SQLite's report, PostgreSQL's under its `postgresql` key)
"""

import cProfile
import io
import json
import pstats
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _pg
import pygit2
from _common import Report, int_arg, median, print_machine, timed
from sqlalchemy import event

from dockyard.controller import gitstore, manifests, planning, workspaces
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.store.db import Database

TARGET_S = 0.5
WORKSPACE = "bench"
WRITE_RE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)
LAUNCHER = "dlt._workspace.deployment.launchers.job"
SIGNATURE = pygit2.Signature("bench", "bench@localhost")


def job(i: int, changed: bool = False) -> dict[str, Any]:
    name = f"job_{i:04d}"
    cron = f"*/{5 + i % 10} * * * *" if not changed else f"*/{16 + i % 10} * * * *"
    return {
        "engine_version": 2,
        "job_ref": f"jobs.bench.{name}",
        "description": f"Loads source {i} into the warehouse.",
        "entry_point": {
            "module": "bench",
            "function": name,
            "job_type": "batch",
            "launcher": LAUNCHER,
        },
        "triggers": [f"schedule:{cron}"],
        "execute": {"concurrency": 1},
        "expose": {"tags": [f"t{i % 7}", "ingest"], "manual": True},
        "default_trigger": f"schedule:{cron}",
    }


def manifest(jobs: int, changed: set[int]) -> dict[str, Any]:
    return {
        "engine_version": 2,
        "deployment_module": "__deployment__",
        "jobs": [job(i, i in changed) for i in range(jobs)],
    }


def code(jobs: int) -> str:
    return "\n".join(f"def job_{i:04d}() -> None:\n    pass\n" for i in range(jobs))


REQUIREMENTS = {
    "dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"},
    "default_groups": ["main"],
    "groups": {"main": ["dlt==1.31.0"]},
    "python_version": "3.11",
}


def commit(repo: pygit2.Repository, yaml_text: str, source: str, message: str) -> str:
    files = {
        gitstore.MANIFEST: gitstore.FileEntry(gitstore.MODE_FILE, yaml_text.encode()),
        gitstore.REQUIREMENTS: gitstore.FileEntry(
            gitstore.MODE_FILE, json.dumps(REQUIREMENTS, indent=2).encode()
        ),
        "code/bench.py": gitstore.FileEntry(gitstore.MODE_FILE, source.encode()),
    }
    tree = gitstore.write_tree(repo, files)
    head = gitstore.head_sha(repo)
    parents = [pygit2.Oid(hex=head)] if head else []
    oid = repo.create_commit(gitstore.BRANCH, SIGNATURE, SIGNATURE, message, tree, parents)
    return str(oid)


@dataclass
class Writes:
    """Statements seen on the engine: row writes per table, and every statement."""

    rows: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)

    def listen(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        verb = statement.split(None, 1)[0].upper() if statement.strip() else "?"
        self.statements[verb + (" (executemany)" if executemany else "")] += 1
        match = WRITE_RE.match(statement)
        if match:
            kind = match.group(1).split()[0].upper()
            rows = len(parameters) if executemany else 1
            self.rows[f"{kind} {match.group(2)}"] += rows


@dataclass
class Case:
    """One fresh database and repository at the point just before the timed reconcile."""

    db: Database
    reconciler: Reconciler
    old_yaml: str
    new_yaml: str
    first_s: float


def setup(tmp: Path, jobs: int, changed: set[int], engine: str) -> Case:
    db = Database(_pg.database_url(engine, tmp))
    db.migrate()
    repos = tmp / "repos"
    with db.session() as session:
        # no pre-receive hook: nothing is pushed here
        workspaces.create(session, repos, WORKSPACE, hooks=lambda repo: None)
    repo = gitstore.open_repo(workspaces.repo_path(repos, WORKSPACE))
    old_yaml = manifests.dump_yaml(manifest(jobs, set()))
    new_yaml = manifests.dump_yaml(manifest(jobs, changed))
    source = code(jobs)
    commit(repo, old_yaml, source, f"deploy: {jobs} added")
    reconciler = Reconciler(db, repos)
    first_s, outcome = timed(lambda: reconciler.reconcile(WORKSPACE))
    assert len(outcome.result["added"]) == jobs
    commit(repo, new_yaml, source, f"deploy: {len(changed)} updated")
    return Case(db, reconciler, old_yaml, new_yaml, first_s)


def floor(case: Case) -> float:
    old = manifests.load_yaml(case.old_yaml)
    fingerprints = {j["job_ref"]: manifests.job_fingerprint(j) for j in old["jobs"]}

    def parse_and_plan() -> planning.Plan:
        new = manifests.load_yaml(case.new_yaml)
        return planning.plan_from_fingerprints(fingerprints, new)

    return timed(parse_and_plan)[0]


def repetition(tmp: Path, jobs: int, changed: set[int], engine: str) -> dict[str, Any]:
    case = setup(tmp, jobs, changed, engine)
    writes = Writes()
    event.listen(case.db.engine, "before_cursor_execute", writes.listen)
    elapsed, outcome = timed(lambda: case.reconciler.reconcile(WORKSPACE))
    event.remove(case.db.engine, "before_cursor_execute", writes.listen)
    if len(outcome.result["updated"]) != len(changed):
        raise RuntimeError(f"expected {len(changed)} updated jobs: {outcome.result['summary']}")
    floor_s = floor(case)
    case.db.dispose()
    return {"s": elapsed, "floor_s": floor_s, "first_s": case.first_s, "writes": writes}


PROFILED = (
    ("reconcile in all", "dockyard/controller/reconciler.py", "reconcile"),
    ("  _manifest (git read + load_yaml)", "dockyard/controller/reconciler.py", "_manifest"),
    ("    manifests.load_yaml", "dockyard/controller/manifests.py", "load_yaml"),
    (
        "  planning.plan_from_fingerprints",
        "dockyard/controller/planning.py",
        "plan_from_fingerprints",
    ),
    ("  _apply (ORM changes, before the flush)", "dockyard/controller/reconciler.py", "_apply"),
    ("    gitstore.latest_version", "dockyard/controller/gitstore.py", "latest_version"),
)


def profile(
    tmp: Path, jobs: int, changed: set[int], engine: str, top: int = 12
) -> tuple[str, dict[str, float]]:
    """Where the second reconcile spends its time (cProfile, cumulative seconds)."""
    case = setup(tmp, jobs, changed, engine)
    profiler = cProfile.Profile()
    profiler.runcall(case.reconciler.reconcile, WORKSPACE)
    case.db.dispose()
    out = io.StringIO()
    stats: Any = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(top)
    parts = {
        label: sum(
            row[3]
            for (path, _line, name), row in stats.stats.items()
            if name == function and path.endswith(suffix)
        )
        for label, suffix, function in PROFILED
    }
    parts["  the rest (sessions, SELECTs, flush + commit)"] = (
        parts["reconcile in all"]
        - parts["  _manifest (git read + load_yaml)"]
        - parts["  planning.plan_from_fingerprints"]
        - parts["  _apply (ORM changes, before the flush)"]
    )
    return out.getvalue(), parts


def part_times(jobs: int, changed: set[int], repeat: int) -> dict[str, float]:
    """The pure parts of a reconcile, each on its own (medians)."""
    old_yaml = manifests.dump_yaml(manifest(jobs, set()))
    new_yaml = manifests.dump_yaml(manifest(jobs, changed))
    old, new = manifests.load_yaml(old_yaml), manifests.load_yaml(new_yaml)
    as_json = json.dumps(new)
    parts = {
        "load_yaml (one manifest)": lambda: manifests.load_yaml(new_yaml),
        "json.loads (same manifest as JSON)": lambda: json.loads(as_json),
        "planning.plan": lambda: planning.plan(old, new),
        "job_fingerprint x 2,000": lambda: [
            manifests.job_fingerprint(j) for m in (old, new) for j in m["jobs"]
        ],
    }
    return {label: median([timed(func)[0] for _ in range(repeat)]) for label, func in parts.items()}


def bench(repeat: int, jobs: int, n_changed: int, engine: str) -> Report:
    changed = set(range(0, jobs, max(1, jobs // n_changed))[:n_changed])
    results = []
    for i in range(repeat + 1):  # the first repetition warms imports and caches, untimed
        with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
            result = repetition(Path(tmp), jobs, changed, engine)
        if i > 0:
            results.append(result)
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        profiled, parts = profile(Path(tmp), jobs, changed, engine)
    rep = Report(
        f"reconcile: {jobs}-job manifest, {n_changed} jobs changed (in-process,"
        f" {_pg.describe(engine)})"
    )
    rep.figures["floor"] = "manifests.load_yaml + planning.plan_from_fingerprints"
    rep.headline([r["s"] for r in results], [r["floor_s"] for r in results], TARGET_S, False)
    rep.add("first reconcile (all added), median [s]", median([r["first_s"] for r in results]))
    rep.figures["first_reconcile_s"] = median([r["first_s"] for r in results])
    for label, value in part_times(jobs, changed, repeat).items():
        rep.add(f"  {label}, median [s]", value)
    writes: Writes = results[-1]["writes"]
    rep.add("row writes in the timed reconcile", dict(sorted(writes.rows.items())), "row_writes")
    rep.add("statements in the timed reconcile", dict(sorted(writes.statements.items())))
    job_rows = sum(n for key, n in writes.rows.items() if key.endswith(" job"))
    unchanged_writes = max(0, job_rows - n_changed)
    rep.add(f"job rows written (changed: {n_changed})", job_rows, "job_rows_written")
    rep.add(
        f"writes for the {jobs - n_changed} unchanged jobs",
        unchanged_writes,
        "unchanged_job_writes",
    )
    for label, seconds in parts.items():
        rep.add(f"cProfile: {label} [s]", seconds)
    rep.figures["profile"] = parts
    print(f"\nprofile of one timed reconcile (cumulative):\n{profiled}")
    return rep


def main(argv: list[str]) -> int:
    print_machine()
    n, jobs, other = (
        int_arg(argv, "-n", 7),
        int_arg(argv, "--jobs", 1000),
        int_arg(argv, "--changed", 10),
    )
    return _pg.report_engines(argv, lambda engine: bench(n, jobs, other, engine))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
