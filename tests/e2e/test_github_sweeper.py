"""The sweeper on real parts: a real server process sweeping every second
(DOCKYARD_GITHUB_SWEEP_S=1, ±20 %), a repository on a loopback git host ("GitHub":
`tests/githost.py`), the real CLI — and **no** webhook delivery sent at all.

A push nobody told the server about is deployed by the sweeper, through the same processing
as a webhook (`workspace info` shows a `sweep` delivery, `deployment list` the source
commit); a head that fails to deploy is tried once, not on every later pass; a git host that
is down is logged and the server keeps serving, then heals once the host is back.
"""

import time
from pathlib import Path
from typing import Any

import httpx

from tests import dbread
from tests.conftest import WORKSPACES, Cli, Server, make_server
from tests.e2e.test_github_crash import GH_TOKEN, REPO, link
from tests.githost import GitHost

SWEEP_EVERY = {"DOCKYARD_GITHUB_SWEEP_S": "1"}
BROKEN = "import dlt\n\ndef broken(:\n    pass\n"


def push(host: GitHost, clone: Path, message: str) -> str:
    return host.commit_and_push(REPO, clone, message)


def swept(cli: Cli, ws: str, sha: str, timeout: float = 300) -> dict[str, Any]:
    """`workspace info`'s last delivery once the sweeper's delivery for `sha` is processed."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        last = cli.json("workspace", "info", "-w", ws)["github"]["last_delivery"]
        if last and last["head_sha"] == sha and last["status"] in ("done", "failed"):
            return last
        time.sleep(0.3)
    raise AssertionError(f"the sweeper did not process {sha[:12]}: last delivery {last}")


def deliveries(server: Server) -> list[tuple[str, str, str, int]]:
    sql = "SELECT delivery_id, event, status, attempts FROM github_delivery ORDER BY id"
    return [
        (str(a), str(b), str(c), int(d)) for a, b, c, d in dbread.rows(dbread.url_of(server), sql)
    ]


def asks(host: GitHost) -> int:
    """How many times the host was asked for its refs (the sweeper's question)."""
    return sum(r.endswith("info/refs?service=git-upload-pack") for r in list(host.requests))


def wait_for(check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.3)


def test_a_missed_push_is_deployed_and_a_bad_head_is_tried_once(
    cache_home: Path, tmp_path: Path
) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    server = make_server(tmp_path, **SWEEP_EVERY).start()
    cli = Cli(server, cache_home, tmp_path / "config", "gh-sweep")
    clone = tmp_path / "clone"
    try:
        pushed = host.seed(REPO, WORKSPACES / "basic", clone)
        link(cli, "gh-sweep", host.api_url())  # and no delivery is ever sent

        last = swept(cli, "gh-sweep", pushed)
        assert (last["event"], last["status"]) == ("sweep", "done"), last
        assert last["delivery_id"].startswith("sweep-") and last["delivery_id"].endswith(pushed)
        assert last["outcome"].startswith(f"deployed {pushed[:12]} as "), last
        assert cli.json("workspace", "info", "-w", "gh-sweep")["github"]["last_processed_head"] == (
            pushed
        )
        [newest, *_] = cli.json("deployment", "list")
        assert newest["source_commit"] == f"{REPO}@{pushed}"
        assert "jobs.__deployment__.hello" in {j["job_ref"] for j in cli.json("job", "list")}
        assert "sweep done: deployed" in cli.run("workspace", "info", "-w", "gh-sweep").stdout

        (clone / "__deployment__.py").write_text(BROKEN)
        bad = push(host, clone, "a commit that cannot be imported")
        last = swept(cli, "gh-sweep", bad)
        assert (last["event"], last["status"]) == ("sweep", "failed"), last
        assert "SyntaxError" in last["outcome"], last
        before = deliveries(server)
        seen = asks(host)
        wait_for(lambda: asks(host) >= seen + 4, "four more sweeps of the bad head")
        assert deliveries(server) == before  # asked again and again, attempted once
        assert [d for d in before if d[0].endswith(bad)] == [
            (last["delivery_id"], "sweep", "failed", 1)
        ]
        [newest, *_] = cli.json("deployment", "list")
        assert newest["source_commit"] == f"{REPO}@{pushed}"  # the old version keeps running
    finally:
        server.stop()
        host.stop()
    assert GH_TOKEN not in server.log.read_text()


def test_a_host_that_is_down_is_logged_and_healed_once_it_is_back(
    cache_home: Path, tmp_path: Path
) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    pushed = host.seed(REPO, WORKSPACES / "basic", tmp_path / "clone")
    host.stop()  # "GitHub" is down: nothing answers on its port
    server = make_server(tmp_path, **SWEEP_EVERY).start()
    cli = Cli(server, cache_home, tmp_path / "config", "gh-down")
    try:
        link(cli, "gh-down", host.api_url())

        def failures() -> int:
            lines = server.log.read_text().splitlines()
            return sum("branch head unknown" in line and "workspace=gh-down" in line
                       for line in lines)  # fmt: skip

        wait_for(lambda: failures() >= 3, "three passes that could not reach the host")
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        assert server.proc is not None and server.proc.poll() is None
        assert cli.json("workspace", "info", "-w", "gh-down")["github"]["last_delivery"] is None
        assert deliveries(server) == []

        host = GitHost(host.root, token=GH_TOKEN, port=host.port).start()  # back, same address
        last = swept(cli, "gh-down", pushed)
        assert (last["event"], last["status"]) == ("sweep", "done"), last
        [newest, *_] = cli.json("deployment", "list")
        assert newest["source_commit"] == f"{REPO}@{pushed}"
    finally:
        server.stop()
        host.stop()
