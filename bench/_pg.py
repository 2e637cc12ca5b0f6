"""The benchmarks' PostgreSQL, for `--db postgresql` (or `both`, beside SQLite).

A throwaway cluster like the tests' (tests/pg.py: Debian's PostgreSQL 15 binaries, data in a
temporary folder, loopback, stopped at exit), but durable as a production server is (fsync and
synchronous commit on), so the two engines are compared on the same terms: dockyard's SQLite
commits are durable too. `DOCKYARD_BENCH_PG_URL` names an existing server's admin URL instead.

Each benchmark repetition gets a new, empty database; the code under test migrates it.
"""

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.pg

from _common import Report, json_out

from tests import pg

ENGINES = ("sqlite", "postgresql")
# what the server did meanwhile, in its log (`log()`): checkpoints, every autovacuum and
# autoanalyze, and any statement that took 100 ms or more (each line starts with its time)
LOGGING = "-c log_checkpoints=on -c log_autovacuum_min_duration=0 -c log_min_duration_statement=100"
_cluster: pg.Cluster | None = None


def engines(argv: Sequence[str], default: str = "both") -> list[str]:
    """`--db sqlite|postgresql|both`."""
    choice = argv[list(argv).index("--db") + 1] if "--db" in argv else default
    if choice == "both":
        return list(ENGINES)
    if choice not in ENGINES:
        raise SystemExit(f"--db {choice!r}: use sqlite, postgresql or both")
    return [choice]


def cluster() -> pg.Cluster:
    global _cluster
    if _cluster is None:
        external = os.environ.get("DOCKYARD_BENCH_PG_URL")
        if external:
            _cluster = pg.Cluster(external)
        else:
            why = pg.missing()
            if why is not None:
                raise SystemExit(f"--db postgresql: {why} (tests/setup_machine.sh installs it)")
            root = Path(tempfile.mkdtemp(prefix="dockyard-bench-pg-"))
            # at exit the cluster stops first (registered after this), then its folder goes
            atexit.register(shutil.rmtree, root, True)
            _cluster = pg.Cluster.start(root / "cluster", durable=True, settings=LOGGING)
    return _cluster


def postmaster_pids() -> list[int]:
    """The benchmark cluster's postmaster (its backends are its children), if it runs here."""
    data = cluster().data
    pid_file = data / "postmaster.pid" if data is not None else None
    if pid_file is None or not pid_file.exists():
        return []
    return [int(pid_file.read_text().split("\n", 1)[0])]


def log() -> bytes:
    """The benchmark cluster's server log so far (empty for an external server)."""
    path = cluster().log
    return path.read_bytes() if path is not None and path.exists() else b""


def database_url(engine: str, tmp: Path) -> str:
    """A new, empty database on `engine` (SQLite: a file in `tmp`)."""
    if engine == "sqlite":
        return f"sqlite:///{tmp / 'dockyard.db'}"
    return cluster().fresh(migrated=False)


def describe(engine: str) -> str:
    return "SQLite" if engine == "sqlite" else "PostgreSQL 15 (loopback, fsync on)"


def report_engines(argv: Sequence[str], bench: Callable[[str], Report]) -> int:
    """Run `bench` on each engine `--db` names, print the reports; the JSON (`--json-out`) is
    the first one's, with the second's figures under its `postgresql` key."""
    reports = [bench(engine) for engine in engines(argv)]
    for rep in reports:
        rep.show()
    if len(reports) == 2:
        reports[0].figures["postgresql"] = reports[1].figures
    reports[0].write(json_out(argv))
    return 0
