"""Shared fixtures: a real dockyard server process, the real CLI, real workspaces."""

import importlib.util
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pg

REPO = Path(__file__).resolve().parents[1]
WORKSPACES = Path(__file__).resolve().parent / "workspaces"
EXAMPLES = REPO / "examples"
ADMIN_TOKEN = "dy_test_admin_token_0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server-db",
        choices=pg.ENGINES,
        default=os.environ.get("DOCKYARD_TEST_DB") or "sqlite",
        help="the database every server process (make_server) uses: sqlite (default) or"
        " postgresql, a fresh database each on the session's PostgreSQL (DOCKYARD_TEST_DB)",
    )


def pytest_configure(config: pytest.Config) -> None:
    pg.set_server_engine(config.getoption("--server-db"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `engine` (directly or through `database_url`, `db`, …) runs once per
    engine: on SQLite and on PostgreSQL; with `--server-db postgresql` (everything on
    PostgreSQL, `make test-postgres`) on PostgreSQL only."""
    chosen = any(
        "engine" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize")
    )  # a test about one engine only says which: @pytest.mark.parametrize("engine", […])
    if "engine" in metafunc.fixturenames and not chosen:
        engines = ["postgresql"] if pg.server_engine() == "postgresql" else list(pg.ENGINES)
        metafunc.parametrize("engine", engines, indirect=True, scope="session")


@pytest.fixture(scope="session", autouse=True)
def postgres_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A PostgreSQL this session starts lives under its basetemp and stops with it."""
    pg.configure(tmp_path_factory.getbasetemp())
    yield
    pg.shutdown()


def require_postgres() -> pg.Cluster:
    """The session's PostgreSQL; none to be had: the test skips saying how, in CI it fails."""
    missing = pg.missing()
    if missing is not None:
        how = "run tests/setup_machine.sh as root (it installs postgresql)"
        how += " or set DOCKYARD_TEST_PG_URL"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {missing}; {how}")
        pytest.skip(f"PostgreSQL tests need PostgreSQL 15: {missing}; {how}")
    return pg.cluster()


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> str:
    """`sqlite` or `postgresql` (parametrized by `pytest_generate_tests`)."""
    name = str(request.param)
    if name == "postgresql":
        require_postgres()
    return name


def new_database_url(engine: str, tmp: Path) -> str:
    """A new database on `engine`: a SQLite file in `tmp` (made by the first migration), or
    a PostgreSQL database already migrated to head (a copy of the session's template)."""
    if engine == "sqlite":
        return f"sqlite:///{tmp / 'dockyard.db'}"
    return pg.cluster().fresh()


def copy_database(url: str, tmp: Path) -> str:
    """A copy of the database at `url` (a module's prepared state, for one test)."""
    if url.startswith("sqlite"):
        # SQLite's backup API, not a file copy: the database runs in WAL mode, and while any
        # connection to it is still open (a pool thread of the controller that made it) the
        # latest commits, the tables included, may live only in `dockyard.db-wal`.
        target = tmp / "copy.db"
        source, copy = sqlite3.connect(url.removeprefix("sqlite:///")), sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return f"sqlite:///{target}"
    return pg.cluster().copy(url)


@pytest.fixture
def database_url(engine: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database migrated to head, on the engine of this parametrization."""
    url = new_database_url(engine, tmp_path)
    yield url
    if engine == "postgresql":
        pg.cluster().drop(url)


@pytest.fixture(scope="session", autouse=True)
def localhost_names() -> Iterator[None]:
    """`*.localhost` resolves to loopback, as browsers do (RFC 6761), so that Python clients
    reach apps on their own origins (`http://<app>--<ws>.apps.localhost:<port>/`); glibc
    without systemd's nss-myhostname does not resolve those names by itself."""
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost"):
            host = "localhost"
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield
    socket.getaddrinfo = original


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class Server:
    url: str
    data_dir: Path
    log: Path
    port: int
    token: str = ADMIN_TOKEN
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # more `dockyard server` flags
    wrap: list[str] = field(default_factory=list)  # a prefix: `ip netns exec NS` (tests/netns.py)

    def start(self) -> "Server":
        env = {**base_env(), "DOCKYARD_ADMIN_TOKEN": self.token, **self.extra_env}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *self.wrap,
                    sys.executable,
                    "-m",
                    "dockyard",
                    "server",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def stop(self, sig: int | None = None) -> None:
        if self.proc is None:
            return
        if sig is None:
            self.proc.terminate()
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


def make_server(tmp: Path, **extra_env: str) -> Server:
    """A server for one test. The GitHub sweeper is off unless the test asks for it
    (`DOCKYARD_GITHUB_SWEEP_S`): its pass a minute in would add a deploy attempt to tests
    that count what a delivery did. With `--server-db postgresql` its database is on the
    session's PostgreSQL: a new, empty one per data dir (the server migrates it, as a real
    one would), the same one again for a server made later on that data dir (a restart)."""
    port = free_port()
    if pg.server_engine() == "postgresql" and "DOCKYARD_DB" not in extra_env:
        require_postgres()
        extra_env = {"DOCKYARD_DB": pg.server_database(tmp / "data"), **extra_env}
    return Server(
        url=f"http://127.0.0.1:{port}",
        data_dir=tmp / "data",
        log=tmp / "server.log",
        port=port,
        extra_env={"DOCKYARD_GITHUB_SWEEP_S": "0", **extra_env},
    )


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CLI cache for the whole session: deploy environments are built once."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@dataclass
class Cli:
    server: Server
    cache_home: Path
    config_home: Path
    workspace: str
    token: str | None = None
    # a deploy needs its workspace to exist (no deploy creates one): the admin makes it first,
    # as a user would with `dockyard workspace create`; False for tests of that refusal
    creates_workspaces: bool = True
    made: set[str] = field(default_factory=set)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "XDG_CACHE_HOME": str(self.cache_home),
                "XDG_CONFIG_HOME": str(self.config_home),
                "DOCKYARD_SERVER": self.server.url,
                "DOCKYARD_TOKEN": self.token or self.server.token,
                "DOCKYARD_WORKSPACE": self.workspace,
            }
        )
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if self.creates_workspaces and _deploys(args):
            self.make_workspace(_named_workspace(args) or self.env(env)["DOCKYARD_WORKSPACE"])
        proc = subprocess.run(
            [sys.executable, "-m", "dockyard", *args],
            cwd=cwd,
            env=self.env(env),
            stdin=subprocess.DEVNULL,  # no terminal: a deploy that would ask refuses instead
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"dockyard {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def make_workspace(self, name: str) -> None:
        """Create workspace `name` on the server once (admin token; one that exists is fine)."""
        if name in self.made:
            return
        made = self.server.api("POST", "/api/v1/workspaces", json={"name": name})
        assert made.status_code in (200, 201, 409), made.text
        self.made.add(name)

    def json(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "-o", "json", cwd=cwd, env=env).stdout)

    def fails(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        """Run a command that must fail; return its one-line error."""
        proc = self.run(*args, cwd=cwd, check=False, env=env)
        assert proc.returncode != 0, f"expected failure, got:\n{proc.stdout}\n{proc.stderr}"
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert lines, "no error message"
        return lines[-1]


def _deploys(args: tuple[str, ...]) -> bool:
    """`deploy`, `sync`, `deployment sync`, `configuration sync`, `launch|serve script.py`."""
    if args[:1] in (("deploy",), ("sync",)) or args[:2] in (
        ("deployment", "sync"),
        ("configuration", "sync"),
    ):
        return True
    return args[:1] in (("launch",), ("serve",)) and any(a.endswith(".py") for a in args[1:])


def _named_workspace(args: tuple[str, ...]) -> str | None:
    for flag in ("-w", "--workspace"):
        if flag in args[:-1]:
            return args[args.index(flag) + 1]
    return None


def copy_workspace(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    return target


@pytest.fixture
def cli(server: Server, cache_home: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Cli:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return Cli(server, cache_home, tmp_path / "config", f"t-{name}")


@pytest.fixture
def basic_ws(tmp_path: Path) -> Path:
    return copy_workspace(WORKSPACES / "basic", tmp_path / "basic")


def wait_run(
    cli: Cli,
    job: str,
    number: int | None = None,
    timeout: float = 180,
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled", "skipped"),
) -> dict[str, Any]:
    """Poll `job-run JOB [N] info` until the run exists and reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    args = ["job-run", job, *([str(number)] if number else []), "info", "-o", "json"]
    while True:
        proc = cli.run(*args, check=False)
        run: dict[str, Any] = json.loads(proc.stdout) if proc.returncode == 0 else {}
        if run.get("status") in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run did not reach {statuses}: {run or proc.stderr}")
        time.sleep(0.3)


def browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        return f"no Chromium at {CHROMIUM}"
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """The system's Chromium driven by Playwright, once per session (Playwright's sync API
    allows one instance per thread). Missing: the test skips, in CI it fails."""
    missing = browser_missing()
    if missing is not None:
        how = "run tests/setup_machine.sh as root: it installs chromium (apt)"
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {missing}; {how}")
        pytest.skip(f"browser tests need Chromium and Playwright: {missing}; {how}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
