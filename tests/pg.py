"""A throwaway PostgreSQL for the tests, so every test that touches the database runs on
PostgreSQL as well as SQLite (issue 14) without anyone setting one up.

One cluster per test session (Debian's PostgreSQL 15 binaries, `tests/setup_machine.sh`
installs them): data and unix socket under the pytest basetemp, TCP on 127.0.0.1 on a free
port, `--auth=trust` (loopback only, thrown away at the end). `DOCKYARD_TEST_PG_URL` (an
admin URL, e.g. `postgresql+psycopg://postgres@db:5432/postgres`) names an existing server
instead. The schema is migrated once into a template database; each test gets a fresh copy
(`CREATE DATABASE … TEMPLATE …`, a file copy: milliseconds, not a migration run).

A test that restarts PostgreSQL (tests/e2e/test_postgres_restart.py) starts a *dedicated*
cluster of its own (`Cluster.start` under its tmp path, `stop`/`restart`/`start_again`), so no
other test's database goes away under it.

initdb refuses to run as root: as root the cluster runs as the `postgres` user (`runuser`).
"""

import atexit
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_BIN = Path(os.environ.get("DOCKYARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "dockyard_template"
ENGINES = ("sqlite", "postgresql")


def missing() -> str | None:
    """Why no PostgreSQL can be had for the tests, or None."""
    if os.environ.get("DOCKYARD_TEST_PG_URL"):
        return None
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {PG_BIN}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser (initdb refuses root)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Cluster:
    """A PostgreSQL server the tests may create databases in (admin URL), with the migrated
    template database made on first use."""

    def __init__(
        self, admin_url: str, data: Path | None = None, options: str = "", log: Path | None = None
    ) -> None:
        self.admin_url = admin_url
        self.data = data  # None: not ours to stop
        self.options = options  # the postgres flags it was started with
        self.log = log
        self._template_ready = False
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls, root: Path, host: str = "127.0.0.1", durable: bool = False, settings: str = ""
    ) -> "Cluster":
        """A new cluster under `root`, listening on `host` (and a socket under `root`); a
        host other than loopback also accepts its /24 (a lab of namespaces, tests/netns.py).
        Not `durable` (the tests): fsync and synchronous commit off. `settings`: more
        `-c name=value` options for the server (no spaces inside a value)."""
        root.mkdir(parents=True, exist_ok=True)
        data, sock = root / "data", root / "sock"
        for path in (data, sock):
            path.mkdir(mode=0o700)
        if os.geteuid() == 0:
            # the basetemp is root's and 0700: postgres must reach its own directories
            for parent in (root, *root.parents):
                if parent == Path("/tmp") or parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o711)
            for path in (root, data, sock):
                shutil.chown(path, "postgres", "postgres")
        subprocess.run(
            _as_owner(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        if host != "127.0.0.1":
            subnet = host.rsplit(".", 1)[0] + ".0/24"
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {subnet} trust\nhost all all samehost trust\n")
        port = _free_port()
        options = f"-h {host} -p {port} -k {sock} -c max_connections=300"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        if settings:
            options += " " + settings
        url = f"postgresql+psycopg://postgres@{host}:{port}/postgres"
        cluster = cls(url, data, options, root / "postgres.log")
        cluster.start_again()
        atexit.register(cluster.stop)
        return cluster

    def _ctl(self, *args: str, check: bool = True) -> None:
        assert self.data is not None, "not a cluster these tests started"
        subprocess.run(
            _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]),
            check=check,
            capture_output=True,
        )

    def start_again(self) -> None:
        """Start it (after `stop(mode)`), on the same port and socket; waits until it takes
        connections."""
        self._ctl("-o", self.options, "-w", "-l", str(self.log), "start")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, then it takes new ones."""
        self._ctl("-m", "fast", "-w", "-l", str(self.log), "restart")

    def stop(self, mode: str = "immediate") -> None:
        if self.data is None or not (self.data / "postmaster.pid").exists():
            return
        self._ctl("-m", mode, "-w", "stop", check=False)

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(False)

    def execute(self, *statements: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()

    def _template(self) -> None:
        with self._lock:
            if self._template_ready:
                return
            from dockyard.controller.store.db import Database

            self.execute(
                f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {TEMPLATE}"
            )
            database = Database(self.url(TEMPLATE))
            try:
                database.migrate()
            finally:
                database.dispose()
            self._template_ready = True

    def fresh(self, migrated: bool = True) -> str:
        """The URL of a new, empty database: migrated to head (a template copy) or blank."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        if migrated:
            self._template()
            self.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        else:
            self.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def copy(self, url: str) -> str:
        """A new database with what the one at `url` holds. A copy needs the source to itself:
        connections a finished fixture left behind (a pool's idle ones) are ended first."""
        name, source = f"t_{uuid.uuid4().hex[:16]}", make_url(url).database
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{source}' AND pid <> pg_backend_pid()",
            f"CREATE DATABASE {name} TEMPLATE {source}",
        )
        return self.url(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name and name.startswith("t_"):
            self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_root: Path | None = None
_cluster: Cluster | None = None
_guard = threading.Lock()
_server_engine = "sqlite"


def set_server_engine(name: str) -> None:
    """What every server process of this session runs on (`--server-db`)."""
    global _server_engine
    _server_engine = name


def server_engine() -> str:
    return _server_engine


_server_databases: dict[Path, str] = {}


def server_database(data_dir: Path) -> str:
    """The PostgreSQL database of the server whose data dir is `data_dir`: one per data dir,
    as the SQLite file in it would be (a server made again on that dir finds its state)."""
    key = data_dir.resolve()
    with _guard:
        known = _server_databases.get(key)
    if known is None:
        known = cluster().fresh(migrated=False)
        with _guard:
            known = _server_databases.setdefault(key, known)
    return known


def configure(basetemp: Path) -> None:
    """Where a cluster started for this session keeps its files (the pytest basetemp)."""
    global _root
    _root = basetemp / f"postgres-{uuid.uuid4().hex[:6]}"


def cluster() -> Cluster:
    """The session's PostgreSQL, started on first use."""
    global _cluster
    with _guard:
        if _cluster is None:
            external = os.environ.get("DOCKYARD_TEST_PG_URL")
            if external:
                _cluster = Cluster(external)
            else:
                root = _root or Path(f"/tmp/dockyard-pg-{os.getpid()}-{time.monotonic_ns()}")
                _cluster = Cluster.start(root)
        return _cluster


def shutdown() -> None:
    global _cluster
    with _guard:
        if _cluster is not None:
            _cluster.stop()
            _cluster = None
