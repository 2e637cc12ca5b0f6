"""Attacks through run logs (issue 10, items 7, 8, 12 and the log findings of 13), against a
real server with both executors: a line without end, a secret cut in two by a split, terminal
control sequences, a million lines, reads of a 130 MB log, the live log of a big run, and
image collection on an engine shared by two servers.

Each test asserts that the attack failed and that ordinary use still works.
"""

import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli, Server, make_server, wait_run
from tests.e2e.test_docker import BASE_IMAGE, docker_engine, docker_server
from tests.security.conftest import probes

MB = 1 << 20
MAX_LINE = 64 * 1024  # the longest line a log keeps (docs/security.md, "Log lines")
HUGE_LINE = 48 * MB  # tests/workspaces/hostile/attack_logs.py
READ_CAP = 1 * MB  # the most one log read answers with (docs/security.md, "Log reads")
DOCKER_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 but tab, DEL, C1

__all__ = ["docker_engine"]  # the fixture, shared with tests/e2e/test_docker.py


def run_log(server: Server, run_id: str) -> list[dict[str, Any]]:
    """Every line of a run's log, page by page through the API."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        answer = server.api("GET", f"/api/v1/runs/{run_id}/logs", params={"offset": offset})
        answer.raise_for_status()
        data = answer.json()
        found.extend(data["lines"])
        if data["next_offset"] == offset:
            return found
        offset = data["next_offset"]


def short(text: str) -> str:
    """A long line as its head, tail and length (readable in an assertion's diff)."""
    return text if len(text) < 200 else f"{text[:20]}…{text[-60:]} ({len(text)} chars)"


def log_file(server: Server, run_id: str) -> Path:
    return server.data_dir / "runs" / run_id / "log.jsonl"


def launch(cli: Cli, ws: Path, job: str, timeout: float = 300) -> dict[str, Any]:
    cli.run("workspace", "create", cli.workspace, check=False)  # once per workspace
    cli.run("deploy", cwd=ws)
    cli.run("launch", job)
    run = wait_run(cli, job, timeout=timeout)
    assert run["status"] == "completed", (run, cli.run("logs", job, check=False).stdout[-3000:])
    return run


# item 7: log lines are bounded, linear and redacted across splits ---------------------------


def check_huge_line(cli: Cli, ws: Path) -> None:
    run = launch(cli, ws, "logs_huge_line")
    lines = run_log(cli.server, run["run_id"])
    out = [short(ln["m"]) for ln in lines if ln["s"] == "out"]
    # the line is cut at the limit and says how much was dropped; nothing of it is lost
    # silently, nothing else is lost, and the log stays small
    cut = short("x" * MAX_LINE + f" [line truncated: {HUGE_LINE - MAX_LINE} bytes]")
    assert out == ["PROBE logs_huge_line started", cut, "PROBE logs_huge_line after ok"]
    assert [ln["m"] for ln in lines if ln["s"] == "err"][-1:] == ["to stderr after the huge line"]
    assert not any(DOCKER_TIME.search(ln["m"]) for ln in lines)
    assert log_file(cli.server, run["run_id"]).stat().st_size < 1 * MB
    assert probes(cli, run["run_id"]) == {"logs_huge_line": "after ok"}


def check_secret_split(cli: Cli, ws: Path) -> None:
    key = "lk-" + secrets.token_hex(16)
    (ws / ".dlt" / "prod.secrets.toml").write_text(f'[sources.logs]\nkey = "{key}"\n')
    run = launch(cli, ws, "logs_secret_split")
    out = [short(ln["m"]) for ln in run_log(cli.server, run["run_id"]) if ln["s"] == "out"]
    stored = log_file(cli.server, run["run_id"]).read_text()
    # neither the secret nor either of its pieces is anywhere in the log
    for piece in (key, key[5:], key[:-10]):
        assert piece not in stored
    assert out == [
        short("a" * (16 * 1024 - 5) + "***" + "b" * 10),
        # over the limit: cut after the redacted secret, never inside it
        short("a" * (64 * 1024 - 5) + "***" + " [line truncated: 10 bytes]"),
        "PROBE logs_secret_split printed 2",
    ]


def test_a_huge_line_without_newline_is_cut_with_a_marker(cli: Cli, hostile_ws: Path) -> None:
    check_huge_line(cli, hostile_ws)


def test_a_secret_printed_across_a_split_is_redacted(cli: Cli, hostile_ws: Path) -> None:
    check_secret_split(cli, hostile_ws)


@pytest.fixture(scope="module")
def dserver(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = docker_server(tmp_path_factory.mktemp("logs-docker-server"))
    yield srv
    srv.stop()


def docker_cli(dserver: Server, cache_home: Path, tmp_path: Path, name: str) -> Cli:
    return Cli(dserver, cache_home, tmp_path / "config", name)


def test_a_huge_line_without_newline_in_a_container_is_cut_with_a_marker(
    dserver: Server, cache_home: Path, tmp_path: Path, hostile_ws: Path
) -> None:
    check_huge_line(docker_cli(dserver, cache_home, tmp_path, "logs-huge"), hostile_ws)


def test_a_secret_printed_across_docker_fragments_is_redacted(
    dserver: Server, cache_home: Path, tmp_path: Path, hostile_ws: Path
) -> None:
    check_secret_split(docker_cli(dserver, cache_home, tmp_path, "logs-split"), hostile_ws)


# item 13: terminal escape sequences never reach the reader's terminal -----------------------


def test_terminal_escapes_from_a_job_do_not_reach_the_cli_terminal(
    cli: Cli, hostile_ws: Path
) -> None:
    run = launch(cli, hostile_ws, "logs_escapes")
    shown = cli.run("logs", "logs_escapes").stdout
    assert CONTROL.findall(shown.replace("\n", "")) == []
    # shown, visibly: the reader sees what the job tried
    assert "title \\x1b]0;pwned\\x07 clear \\x1b[2J\\x1b[H red \\x1b[31mRED\\x1b[0m" in shown
    assert "c1 \\x9b31m csi, bell \\x07, back ab\\x08\\x08XY, del \\x7f" in shown
    assert "tab\tkept, hidden\\rSHOWN" in shown
    followed = cli.run("job-run", "logs_escapes", "logs", "-f").stdout
    assert CONTROL.findall(followed.replace("\n", "")) == [] and "\\x1b[2J" in followed
    info = cli.run("job-run", "logs_escapes", "info").stdout
    assert CONTROL.findall(info.replace("\n", "")) == [] and "pwned-result" in info
    # the data itself is kept as the job wrote it (JSON escapes it)
    lines = [ln["m"] for ln in cli.json("logs", "logs_escapes")["lines"]]
    assert "tab\tkept, hidden\rSHOWN" in lines
    assert probes(cli, run["run_id"]) == {"logs_escapes": "printed 3"}


# item 8: reads are bounded; the CLI says what it shows --------------------------------------

NOTICE = re.compile(r"^showing the (last|first) ([\d,]+) of ([\d,]+) lines; --all for everything$")


def test_logs_of_a_million_lines_say_what_they_show(cli: Cli, hostile_ws: Path) -> None:
    launch(cli, hostile_ws, "logs_million_lines", timeout=600)
    default = cli.run("logs", "logs_million_lines")
    shown = default.stdout.splitlines()
    notice = NOTICE.match(default.stderr.strip().splitlines()[-1])
    assert notice is not None, default.stderr
    total = int(notice.group(3).replace(",", ""))
    assert notice.group(1, 2) == ("last", "200") and len(shown) == 200
    job_lines = [ln.split(" ", 1)[1] for ln in shown if not ln.split(" ", 1)[1].startswith("»")]
    assert job_lines[-1] == "line 1000002"
    assert job_lines == [f"line {i}" for i in range(1_000_003 - len(job_lines), 1_000_003)]

    head = cli.run("logs", "logs_million_lines", "--head", "3")
    assert len(head.stdout.splitlines()) == 3
    assert head.stderr.strip().endswith(
        f"showing the first 3 of {total:,} lines; --all for everything"
    )
    tail = cli.run("job-run", "logs_million_lines", "logs", "--tail", "1000")
    assert len(tail.stdout.splitlines()) == 1000 and "the last 1,000 of" in tail.stderr
    assert tail.stdout.splitlines()[-200:] == shown

    everything = cli.run("logs", "logs_million_lines", "--all", timeout=600)
    lines = everything.stdout.splitlines()
    assert len(lines) == total >= 1_000_003 and "showing" not in everything.stderr
    numbers = [ln.split(" ", 1)[1] for ln in lines if " line " in ln]
    assert numbers == [f"line {i}" for i in range(1_000_003)]

    as_json = cli.json("logs", "logs_million_lines")
    assert len(as_json["lines"]) == 200 and as_json["line_count"] == total
    assert as_json["lines"][-1]["m"] == shown[-1].split(" ", 1)[1].removeprefix("» ")


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv").start()
    yield server
    server.stop()


def test_six_parallel_reads_of_a_130_mb_log_stay_bounded(
    own_server: Server, cache_home: Path, tmp_path: Path, hostile_ws: Path
) -> None:
    cli = Cli(own_server, cache_home, tmp_path / "config", "wide")
    run = launch(cli, hostile_ws, "logs_wide_lines", timeout=600)
    assert log_file(own_server, run["run_id"]).stat().st_size > 120 * MB
    assert own_server.proc is not None
    before = peak_rss(own_server.proc.pid)
    url = f"{own_server.url}/api/v1/runs/{run['run_id']}/logs"
    answers: list[httpx.Response] = []

    def read() -> None:
        auth = {"Authorization": f"Bearer {own_server.token}"}
        answers.append(httpx.get(url, headers=auth, timeout=600))

    readers = [threading.Thread(target=read) for _ in range(6)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    grew = peak_rss(own_server.proc.pid) - before
    assert grew < 100 * MB, f"the server grew by {grew / MB:.0f} MB"
    assert [a.status_code for a in answers] == [200] * 6
    assert max(len(a.content) for a in answers) < READ_CAP + 64 * 1024  # capped answers
    assert all(a.json()["more"] is True for a in answers)  # and they say so
    # and reading it all, page by page, still gives every line once, in order
    wide = [ln["m"][:10] for ln in run_log(own_server, run["run_id"]) if ln["s"] == "out"]
    assert wide[:-1] == [f"{i:010d}" for i in range(2_100)]


# item 13: the dashboard's live log of a big run ---------------------------------------------


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str, str]]:
    """(event, id, data) of a server-sent event stream."""
    event, ident, data = "message", "", ""
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, ident, data
            event, ident, data = "message", "", ""
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data = line[6:]


def test_the_live_log_of_a_big_run_streams_in_bounded_events(
    own_server: Server, cache_home: Path, tmp_path: Path, hostile_ws: Path
) -> None:
    cli = Cli(own_server, cache_home, tmp_path / "config", "livewide")
    run = launch(cli, hostile_ws, "logs_wide_lines", timeout=600)
    seen: list[str] = []
    biggest, status, resume = 0, "", ""
    with httpx.Client(base_url=own_server.url, timeout=60) as browser:
        login = browser.post(
            "/ui/login", data={"token": own_server.token}, headers={"Origin": own_server.url}
        )
        assert login.status_code in (200, 303), login.text
        stream = f"/ui/w/{cli.workspace}/runs/{run['run_id']}/log"
        # a reader on a slow link first: its stream must end between two events, never
        # by cancelling the server's write of one (that was the traceback)
        with browser.stream("GET", stream) as response:
            started = time.monotonic()
            for _ in response.iter_bytes(64 * 1024):
                time.sleep(0.05)
                if time.monotonic() - started > 8:
                    break
        for _ in range(400):  # each connection lasts a few seconds; the browser reconnects
            headers = {"Last-Event-ID": resume} if resume else {}
            with browser.stream("GET", stream, headers=headers) as response:
                assert response.status_code == 200
                for event, ident, data in sse_events(response):
                    biggest = max(biggest, len(data))
                    if event == "lines":
                        seen.extend(ln["m"][:10] for ln in json.loads(data) if ln["s"] == "out")
                        resume = ident
                    elif event == "end":
                        status = json.loads(data)["status"]
            if status:
                break
    assert status == "completed"
    assert biggest < READ_CAP + 64 * 1024
    assert seen[:-1] == [f"{i:010d}" for i in range(2_100)]
    assert "Traceback" not in own_server.log.read_text()


# item 12: image collection removes only this server's images --------------------------------


def test_image_gc_removes_only_this_servers_images(docker_engine: None, tmp_path: Path) -> None:
    from dockyard.controller.executors.docker import DockerConfig, DockerExecutor

    repo = f"dockyard-env-gc-{secrets.token_hex(4)}"  # a dockyard-looking name of our own
    mine, theirs = (
        DockerExecutor(
            DockerConfig(BASE_IMAGE, keep_images=0, image_repo=repo, state_dir=tmp_path / name)
        )
        for name in ("server-a", "server-b")
    )
    for executor in (mine, theirs):
        executor.config.state_dir.mkdir()  # type: ignore[union-attr]
    client = mine.client
    made: list[str] = []

    def image(tag: str, owner: DockerExecutor | None) -> None:
        container = client.containers.create(BASE_IMAGE, ["true"])
        labels = owner.image_labels("test") if owner is not None else {}
        container.commit(repository=repo, tag=tag, conf={"Labels": labels})
        container.remove()
        made.append(f"{repo}:{tag}")

    try:
        image("a1", mine)
        image("a2", mine)
        image("b1", theirs)
        image("unlabelled", None)
        removed = mine.collect_images()
        left = sorted(t for i in client.images.list(name=repo) for t in i.tags)
        assert sorted(removed) == [f"{repo}:a1", f"{repo}:a2"]
        assert left == [f"{repo}:b1", f"{repo}:unlabelled"]
        # the other server collects its own, and still leaves the unlabelled one alone
        assert theirs.collect_images() == [f"{repo}:b1"]
        assert [t for i in client.images.list(name=repo) for t in i.tags] == [f"{repo}:unlabelled"]
        # a server's id is made once and kept in its data directory
        assert (
            mine.server_id
            == DockerExecutor(DockerConfig(BASE_IMAGE, state_dir=tmp_path / "server-a")).server_id
            != theirs.server_id
        )
    finally:
        for tag in made:
            subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
