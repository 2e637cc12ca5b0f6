"""Two real `dockyard server` processes on one data dir and one SQLite database: the holder
of the leases is SIGKILLed and the other takes them over and does the sweep's work (a
workspace whose HEAD moved behind the servers' back gets reconciled); a clean stop releases
the leases so the next server holds them as it starts. No timed assertion: generous
deadlines, the takeover time measured and printed."""

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.controller import gitstore, leases, manifests, workspaces
from tests.conftest import Cli, Server, make_server
from tests.integration.helpers import Committer
from tests.unit import samples

WS = "leased"
DEADLINE_S = 90.0


def peer(tmp: Path, first: Server) -> Server:
    """Another server on `first`'s data dir and database (its own port and log)."""
    tmp.mkdir(parents=True)
    shared = (
        {"DOCKYARD_DB": first.extra_env["DOCKYARD_DB"]} if "DOCKYARD_DB" in first.extra_env else {}
    )
    server = make_server(tmp, DOCKYARD_SWEEP_INTERVAL="1", DOCKYARD_NODE_NAME=tmp.name, **shared)
    server.data_dir = first.data_dir
    return server


def held(server: Server) -> dict[str, dict[str, Any]]:
    answer = server.api("GET", "/api/v1/leases")
    assert answer.status_code == 200, answer.text
    return {row["name"]: row for row in answer.json()}


def wait_for(what: str, check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds (a generous deadline, never a timed assertion)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < DEADLINE_S, f"{what}: not within {DEADLINE_S:g} s"
        time.sleep(0.2)
    return time.monotonic() - start


def test_the_other_server_takes_the_leases_over_and_sweeps_when_the_holder_dies(
    tmp_path: Path, cache_home: Path
) -> None:
    first = make_server(tmp_path / "a", DOCKYARD_SWEEP_INTERVAL="1", DOCKYARD_NODE_NAME="a")
    (tmp_path / "a").mkdir()
    first.start()
    second = peer(tmp_path / "b", first)
    third = peer(tmp_path / "c", first)
    try:
        second.start()
        before = held(first)
        assert before[leases.SWEEP]["this_server"] and before[leases.RETENTION]["this_server"]
        assert before[leases.SWEEP]["holder"].split(":")[1] == str(first.proc.pid)  # type: ignore[union-attr]
        assert not held(second)[leases.SWEEP]["this_server"]
        assert first.api("POST", "/api/v1/workspaces", json={"name": WS}).status_code == 201

        first.stop(signal.SIGKILL)  # no release: the lease must expire
        killed = time.monotonic()
        sha = move_head(first.data_dir)  # a HEAD no push event announced
        takeover = wait_for("takeover", lambda: held(second)[leases.SWEEP]["this_server"])
        swept = wait_for("sweep", lambda: reconciled(second) == sha)
        print(f"lease taken over {time.monotonic() - killed - swept:.1f} s after the SIGKILL")
        print(f"(waited {takeover:.1f} s for the takeover, {swept:.1f} s more for the sweep)")
        after = held(second)
        for name in (leases.SWEEP, leases.RETENTION):
            assert after[name]["epoch"] == before[name]["epoch"] + 1
            assert after[name]["holder"] != before[name]["holder"]

        second.stop()  # a clean stop releases: the next server holds the leases at start
        third.start()
        cli = Cli(third, cache_home, tmp_path / "config", WS)
        listed = {row["name"]: row for row in cli.json("lease", "list")}
        assert listed[leases.SWEEP]["this_server"]
        assert listed[leases.SWEEP]["epoch"] == before[leases.SWEEP]["epoch"] + 2
        table = cli.run("lease", "list").stdout
        assert leases.SWEEP in table and listed[leases.SWEEP]["holder"] in table
    finally:
        for server in (first, second, third):
            server.stop()


def move_head(data_dir: Path) -> str:
    """Commit a deployment on the workspace's `main` directly (as a crash between git moving
    the branch and the reconcile would leave it): only the sweep reconciles it."""
    repo = gitstore.open_repo(workspaces.repo_path(data_dir / "repos", WS))
    manifest = manifests.dump_yaml(samples.manifest(samples.HELLO)).encode()
    files = {
        gitstore.MANIFEST: manifest,
        gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
        "config/config.toml": b"",
    }
    return Committer(repo).commit(files)


def reconciled(server: Server) -> str | None:
    info = server.api("GET", f"/api/v1/workspaces/{WS}")
    assert info.status_code == 200, info.text
    sha: str | None = info.json()["reconciled_sha"]
    return sha
