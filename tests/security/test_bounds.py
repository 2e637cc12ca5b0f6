"""Request bodies are bounded before authentication and while streaming (issue 10, item 6);
numbers in paths cannot crash the server, a replaced DOCKYARD_ADMIN_TOKEN stops working, and
retention bounds what runs and deployments leave on disk (item 13). Against real server
processes; docs/security.md "Bounded inputs and reads" and "Who is who".

The HTTP here is hand-written over a socket, as an attacker would send it: a declared
`Content-Length` with no body behind it yet, or a chunked body that never ends.
"""

import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import WORKSPACES, Cli, Server, copy_workspace, make_server, wait_run
from tests.security.conftest import probes

ANSWER_WITHIN_S = 60  # a refusal comes at once; without one the test fails here, not hangs
MIB = 1 << 20
BEACON = "/beacon/0b7e5c1e-3f7a-4c55-9d1f-2f8f7d0f4a11.0123456789abcdef/job_result"


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own (default limits), so its memory is this module's alone."""
    srv = make_server(tmp_path_factory.mktemp("bounds-server")).start()
    yield srv
    srv.stop()


def head(server: Server, method: str, path: str, framing: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{auth}"
        f"Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    ).encode()


def status_of(sock: socket.socket) -> int:
    """The status of the server's answer; fails if none comes."""
    sock.settimeout(ANSWER_WITHIN_S)
    try:
        first = sock.recv(4096)
    except TimeoutError:
        pytest.fail(f"no answer within {ANSWER_WITHIN_S} s: the server waits for the body")
    assert first.startswith(b"HTTP/1.1 "), first[:200]
    return int(first.split(b" ")[1])


def declared_only(server: Server, method: str, path: str, length: int) -> int:
    """Declare a body of `length` bytes and send none of it: the answer's status."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(server, method, path, f"Content-Length: {length}"))
        return status_of(sock)


def streamed(server: Server, method: str, path: str, total: int) -> tuple[int, int]:
    """Stream `total` bytes chunked and never end the body; stop sending as soon as the
    server answers. The answer's status and the bytes sent before it."""
    piece = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(server, method, path, "Transfer-Encoding: chunked"))
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(piece)
                sent += 64 * 1024
        except OSError:
            pass  # closed on us: the answer is waiting in the socket
        return status_of(sock), sent


def rss_peak_mib(server: Server) -> float:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# bodies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", BEACON), ("POST", "/ui/login"), ("POST", "/api/v1/workspaces")],
    ids=["beacon", "login", "api"],
)
def test_a_huge_declared_body_is_refused_before_it_is_read(
    bounded: Server, method: str, path: str
) -> None:
    assert declared_only(bounded, method, path, 300 * 1000 * 1000) == 413


@pytest.mark.parametrize(
    ("method", "path", "cap"),
    [("POST", "/ui/login", 64 * 1024), ("POST", "/api/v1/workspaces", MIB)],
    ids=["login", "api"],
)
def test_a_streamed_body_is_cut_off_at_its_cap(
    bounded: Server, method: str, path: str, cap: int
) -> None:
    status, sent = streamed(bounded, method, path, cap + 8 * MIB)
    assert status == 413
    assert sent < cap + 8 * MIB  # answered before the client was done


def test_300_mb_at_the_beacon_and_the_login_form_leave_the_servers_memory_alone(
    bounded: Server,
) -> None:
    """The attack as reported: 300 MB to the beacon or the login form, no token; on main
    the server grew by more than the body before it answered 401."""
    before = rss_peak_mib(bounded)
    for method, path in (("PUT", BEACON), ("POST", "/ui/login")):
        for framing in ("declared", "chunked"):
            total = 300 * 1000 * 1000
            if framing == "declared":
                status = declared_then_sent(bounded, method, path, total)
            else:
                status, _ = streamed(bounded, method, path, total)
            assert status in (401, 413), (path, framing, status)
    assert rss_peak_mib(bounded) - before < 64


def declared_then_sent(server: Server, method: str, path: str, total: int) -> int:
    """Declare `total` bytes and send them, whatever the server says meanwhile (until it
    closes the connection); the status of its answer."""
    piece = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(server, method, path, f"Content-Length: {total}"))
        try:
            for _ in range(total // len(piece)):
                sock.sendall(piece)
        except OSError:
            pass
        return status_of(sock)


def test_ordinary_bodies_still_work(bounded: Server, tmp_path: Path) -> None:
    made = bounded.api("POST", "/api/v1/workspaces", json={"name": "bodies-ok"})
    assert made.status_code == 201, made.text
    login = httpx.post(
        f"{bounded.url}/ui/login",
        data={"token": bounded.token, "next": "/ui/"},
        headers={"Origin": bounded.url},
    )
    assert login.status_code == 303
    assert "dockyard_session" in login.headers["set-cookie"]
    wrong = httpx.post(
        f"{bounded.url}/ui/login",
        data={"token": "dy_nope", "next": "/ui/"},
        headers={"Origin": bounded.url},
    )
    assert wrong.status_code == 401  # read, checked, refused: not a size problem


# numbers in paths ----------------------------------------------------------------------------
HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def with_a_run(
    bounded: Server, cache_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Cli, str]:
    """The hostile workspace on the module's server, its harmless job run once."""
    tmp = tmp_path_factory.mktemp("bounds-cli")
    cli = Cli(bounded, cache_home, tmp / "config", "bounds-numbers")
    cli.run("workspace", "create", cli.workspace)
    cli.run("deploy", cwd=copy_workspace(WORKSPACES / "hostile", tmp / "hostile"))
    cli.run("launch", "innocent")
    run = wait_run(cli, "innocent")
    assert run["status"] == "completed", run
    return cli, str(run["run_id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/workspaces/{ws}/jobs/innocent/runs/{huge}"),
        ("DELETE", "/api/v1/tokens/{huge}"),
        ("GET", "/api/v1/runs/{run}/logs?offset={huge}"),
        ("POST", "/ui/w/{ws}/tokens/{huge}/revoke"),
    ],
    ids=["run-number", "token-id", "log-offset", "ui-token-id"],
)
def test_a_huge_number_in_a_path_or_query_is_a_clean_400_not_a_crash(
    with_a_run: tuple[Cli, str], method: str, path: str
) -> None:
    """Each of these was a 500 (SQLite integer overflow, a file seek out of range)."""
    cli, run_id = with_a_run
    answer = cli.server.api(method, path.format(ws=cli.workspace, huge=HUGE, run=run_id))
    assert answer.status_code == 400, answer.text
    assert "less than or equal to 9223372036854775807" in answer.text


@pytest.mark.parametrize(
    "path",
    ["/api/v1/workspaces/{ws}/apps/innocent/links/{huge}", "/ui/w/{ws}/jobs?offset={huge}"],
    ids=["link-id", "jobs-page-offset"],
)
def test_every_number_in_a_path_or_query_has_the_same_bound(
    with_a_run: tuple[Cli, str], path: str
) -> None:
    cli, _ = with_a_run
    method = "DELETE" if "/links/" in path else "GET"
    answer = cli.server.api(method, path.format(ws=cli.workspace, huge=HUGE))
    assert answer.status_code == 400, answer.text


def test_the_largest_valid_numbers_are_plain_not_founds(with_a_run: tuple[Cli, str]) -> None:
    cli, run_id = with_a_run
    largest = str(2**63 - 1)
    run = cli.server.api("GET", f"/api/v1/workspaces/{cli.workspace}/jobs/innocent/runs/{largest}")
    assert run.status_code == 404, run.text
    assert cli.server.api("DELETE", f"/api/v1/tokens/{largest}").status_code == 404
    logs = cli.server.api("GET", f"/api/v1/runs/{run_id}/logs", params={"offset": largest})
    assert logs.status_code == 200, logs.text
    assert logs.json()["lines"] == []
    latest = cli.server.api("GET", f"/api/v1/workspaces/{cli.workspace}/jobs/innocent/runs/0")
    assert latest.json()["run_id"] == run_id  # ordinary use: 0 is still the latest run


# the admin token from the environment ------------------------------------------------------
def test_a_replaced_admin_token_stops_working(tmp_path: Path) -> None:
    first = make_server(tmp_path)
    first.token = "dy_first_admin_token_0123456789"
    first.start()
    try:
        made = first.api("POST", "/api/v1/tokens", json={"name": "ops", "role": "admin"})
        assert made.status_code == 201, made.text
        api_made = made.json()["token"]
    finally:
        first.stop()

    second = make_server(tmp_path)
    second.token = "dy_second_admin_token_012345678"
    second.start()
    try:
        assert second.api("GET", "/api/v1/me", token=first.token).status_code == 401
        assert second.api("GET", "/api/v1/me").json()["role"] == "admin"
        assert second.api("GET", "/api/v1/me", token=api_made).json()["role"] == "admin"
        listed = {t["name"]: t for t in second.api("GET", "/api/v1/tokens").json()}
        assert listed["ops"]["revoked_at"] is None
    finally:
        second.stop()

    second.start()  # the same token again: it stays valid
    try:
        assert second.api("GET", "/api/v1/me").status_code == 200
        assert second.api("GET", "/api/v1/me", token=first.token).status_code == 401
    finally:
        second.stop()


# retention -------------------------------------------------------------------------------------
def days(seconds: float) -> str:
    return str(seconds / 86400)


def until(check: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.5)


def test_disk_use_is_bounded_by_retention_and_a_removed_log_says_so(
    tmp_path: Path, cache_home: Path
) -> None:
    """Tiny windows (logs 20 s, checkouts and environments 2 s) and a pass every second:
    old logs and checkouts go while runs keep working, and the current deployment keeps its
    code and its environment."""
    srv = make_server(
        tmp_path,
        DOCKYARD_RETAIN_RUNS_DAYS=days(20),
        DOCKYARD_RETAIN_CHECKOUTS_DAYS=days(2),
        DOCKYARD_RETAIN_ENVS_DAYS=days(2),
        DOCKYARD_RETENTION_INTERVAL="1",
    ).start()
    try:
        cli = Cli(srv, cache_home, tmp_path / "config", "retained")
        ws = copy_workspace(WORKSPACES / "hostile", tmp_path / "hostile")
        cli.run("workspace", "create", cli.workspace)
        cli.run("deploy", cwd=ws)
        first = cli.json("info")["deployment_version"]
        cli.run("launch", "innocent")
        assert wait_run(cli, "innocent", 1)["status"] == "completed"

        (ws / "attack_smoke.py").write_text((ws / "attack_smoke.py").read_text() + "# v2\n")
        cli.run("deploy", cwd=ws)
        second = cli.json("info")["deployment_version"]
        cli.run("launch", "innocent")
        run = wait_run(cli, "innocent", 2)
        assert run["status"] == "completed", run  # ran while retention kept deleting
        assert probes(cli, run["run_id"]) == {"innocent": "ran"}

        until(
            lambda: "removed by retention" in cli.run("logs", "innocent", "1").stdout,
            "the first run's log removed",
        )
        assert cli.json("job-run", "innocent", "1", "info")["status"] == "completed"
        checkouts, environments = srv.data_dir / "checkouts" / cli.workspace, srv.data_dir / "envs"
        until(lambda: not (checkouts / first).exists(), "the first deployment's checkout gone")

        # once the current deployment's code and environment are older than their window,
        # leftovers made now must go in the next pass, and the current ones stay
        time.sleep(3)
        decoys = [checkouts / ("0" * 40), environments / ("0" * 32)]
        for decoy in decoys:
            decoy.mkdir()
        until(lambda: not any(d.exists() for d in decoys), "unused leftovers gone")
        # what is kept: the current checkout and environment, each beside its lock file
        # (controller/filelock.py); the removed ones' lock files went with them
        assert sorted(p.name for p in checkouts.iterdir()) == sorted([second, f".{second}.lock"])
        kept = run["environment"]
        assert sorted(p.name for p in environments.iterdir()) == sorted([kept, f".{kept}.lock"])
    finally:
        srv.stop()
