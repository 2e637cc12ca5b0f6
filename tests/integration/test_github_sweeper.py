"""The sweeper's passes on a real controller (real SQLite file, real links made through the
link use case), and its question to a git host on real loopback servers: `tests/githost.py`
for the answers a git host gives, a raw socket server for one that dribbles or redirects.
The passes are called by hand, so each test sees exactly what one pass does."""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.clock import FakeClock
from dockyard.controller import leases, usecases
from dockyard.controller.store.models import GithubDelivery, GithubLink
from dockyard.errors import InvalidInput, Unauthorized, Unavailable
from dockyard.webhooks import deliveries, heads, sweeper
from dockyard.webhooks.events import Classified
from dockyard.webhooks.sweeper import Sweeper
from tests.githost import GitHost
from tests.integration.deployed import ADMIN, WS, Yard, make_yard

REPO = "acme/pipelines"
GH_TOKEN = "ghp_sweeper_test_token_0123456789"
BASIC = Path(__file__).parents[1] / "workspaces" / "basic"
HEAD, OLD = "a" * 40, "b" * 40


@pytest.fixture
def yard(tmp_path: Path, database_url: str) -> Iterator[Yard]:
    yield from make_yard(tmp_path / "data", db_url=database_url)


def link(yard: Yard, name: str = WS, repo: str = REPO) -> int:
    fields = {"repo": repo, "branch": "main", "api_url": "https://github.example.com/api/v3"}
    usecases.github.link(yard.ctl, ADMIN, name, fields, GH_TOKEN)
    with yard.ctl.db.session() as session:
        found = session.query(GithubLink).filter(GithubLink.repo == repo).one()
        return found.id


class Host:
    """What the sweeper asks, recorded; each repository's head, or an error to raise."""

    def __init__(self) -> None:
        self.asked: list[heads.Ask] = []
        self.heads: dict[str, str | Exception] = {}
        self.delay = 0.0

    def __call__(self, ask: heads.Ask) -> str:
        self.asked.append(ask)
        time.sleep(self.delay)
        found = self.heads[ask.url.split("/", 3)[3].removesuffix(".git")]
        if isinstance(found, Exception):
            raise found
        return found


def make(yard: Yard, host: Host, interval_s: float = 60.0) -> tuple[Sweeper, list[int]]:
    woken: list[int] = []
    made = Sweeper(
        yard.ctl.db,
        yard.ctl.github_credentials,
        yard.clock,
        interval_s,
        lambda: woken.append(1),
        ask=host,
    )
    return made, woken


def rows(yard: Yard) -> list[tuple[str, str, str, str, str | None]]:
    with yard.ctl.db.session() as session:
        found = session.query(GithubDelivery).order_by(GithubDelivery.id)
        return [(r.delivery_id, r.event, r.kind, r.status, r.head_sha) for r in found]


def test_a_new_head_is_recorded_once_as_a_deploy_delivery_and_wakes_the_processor(
    yard: Yard,
) -> None:
    link_id = link(yard)
    host = Host()
    host.heads[REPO] = HEAD
    sweep, woken = make(yard, host)
    ident = sweeper.delivery_id(link_id, HEAD)
    assert sweep.sweep() == [ident]
    assert rows(yard) == [(ident, "sweep", "deploy", "received", HEAD)]
    assert woken == [1]
    [asked] = host.asked
    assert (asked.url, asked.branch, asked.token) == (
        f"https://github.example.com/{REPO}.git",
        "main",
        GH_TOKEN,
    )
    assert GH_TOKEN not in repr(asked)
    assert sweep.sweep() == []  # still waiting: the processor will fetch the head anyway
    with yard.ctl.db.session() as session:
        deliveries.claim(session, (1,))
        deliveries.finish(session, [1], deliveries.FAILED, "broken", yard.clock.now())
    assert sweep.sweep() == []  # failed: tried once, not again
    assert len(rows(yard)) == 1 and len(host.asked) == 3 and woken == [1]


def test_nothing_is_recorded_for_the_processed_head_or_while_a_webhook_waits(
    yard: Yard,
) -> None:
    link_id = link(yard)
    host = Host()
    host.heads[REPO] = HEAD
    with yard.ctl.db.session() as session:
        session.get_one(GithubLink, link_id).last_processed_head = HEAD
    sweep, woken = make(yard, host)
    assert sweep.sweep() == []
    host.heads[REPO] = OLD  # a force-push back: not the processed head, a webhook waits
    with yard.ctl.db.session() as session:
        row = session.get_one(GithubLink, link_id)
        pushed = Classified("deploy", "received", head_sha=OLD, after_sha=OLD, repo=REPO)
        deliveries.record(session, row, "gh-1", "push", pushed, yard.clock.now())
    assert sweep.sweep() == []
    assert [r[0] for r in rows(yard)] == ["gh-1"] and woken == []


def test_a_host_that_fails_is_logged_once_per_pass_and_the_others_are_still_asked(
    yard: Yard, caplog: pytest.LogCaptureFixture
) -> None:
    usecases.workspaces.create_workspace(yard.ctl, ADMIN, "other")
    first, second = link(yard), link(yard, "other", "acme/other")
    host = Host()
    host.heads[REPO] = Unavailable("asking github.example.com failed: connection refused")
    host.heads["acme/other"] = HEAD
    sweep, _ = make(yard, host)
    assert sweep.sweep() == [sweeper.delivery_id(second, HEAD)]
    unknown = [r for r in caplog.records if r.getMessage() == "github sweep: branch head unknown"]
    assert len(unknown) == 1 and "connection refused" in unknown[0].__dict__["error"]
    host.heads[REPO] = RuntimeError("anything at all")  # the loop survives any failure
    assert sweep.sweep() == []
    assert [a.url.split("/", 3)[3] for a in host.asked] == [f"{REPO}.git", "acme/other.git"] * 2
    assert first != second


def test_a_slow_pass_stops_after_one_interval_and_the_next_goes_on_from_there(
    yard: Yard,
) -> None:
    usecases.workspaces.create_workspace(yard.ctl, ADMIN, "two")
    usecases.workspaces.create_workspace(yard.ctl, ADMIN, "three")
    ids = [link(yard), link(yard, "two", "acme/two"), link(yard, "three", "acme/three")]
    host = Host()
    host.heads.update({REPO: HEAD, "acme/two": HEAD, "acme/three": HEAD})
    host.delay = 0.2  # each question takes longer than the whole pass may
    sweep, _ = make(yard, host, interval_s=0.1)
    assert sweep.sweep() == [sweeper.delivery_id(ids[0], HEAD)]
    assert sweep.sweep() == [sweeper.delivery_id(ids[1], HEAD)]
    assert sweep.sweep() == [sweeper.delivery_id(ids[2], HEAD)]
    assert sweep.sweep() == []  # round again: each waits for the processor now
    assert len(host.asked) == 4


def test_the_first_step_waits_an_interval_and_later_ones_sweep(yard: Yard) -> None:
    link(yard)
    host = Host()
    host.heads[REPO] = HEAD
    sweep, _ = make(yard, host, interval_s=10.0)
    assert 8.0 <= sweep.step() <= 12.0
    assert host.asked == []  # not at start-up: stored deliveries go first
    assert 8.0 <= sweep.step() <= 12.0
    assert len(host.asked) == 1 and len(rows(yard)) == 1


# the question itself, to real loopback servers ----------------------------------------------


def test_the_branch_head_is_read_from_a_real_git_host(tmp_path: Path) -> None:
    host = GitHost(tmp_path / "host", token=GH_TOKEN).start()
    try:
        pushed = host.seed(REPO, BASIC, tmp_path / "clone")
        url = host.url(REPO)
        assert heads.branch_head(heads.Ask(url, "main", GH_TOKEN)) == pushed
        with pytest.raises(InvalidInput, match="has no branch 'feature'"):
            heads.branch_head(heads.Ask(url, "feature", GH_TOKEN))
        with pytest.raises(Unauthorized, match="refused the link's credentials"):
            heads.branch_head(heads.Ask(url, "main", "ghp_wrong"))
        with pytest.raises(InvalidInput, match="no repository at"):
            heads.branch_head(heads.Ask(host.url("acme/none"), "main", GH_TOKEN))
        assert all(r.endswith("?service=git-upload-pack") for r in host.requests[2:])
    finally:
        host.stop()


@pytest.mark.parametrize(
    "url", ["http://example.com/a/b.git", "ftp://127.0.0.1/a.git", "https://u:p@h.com/a.git"]
)
def test_only_https_or_loopback_http_without_credentials_is_asked(url: str) -> None:
    with pytest.raises(InvalidInput):
        heads.branch_head(heads.Ask(url, "main", GH_TOKEN))


class RawHost:
    """A loopback server that answers every connection with `answer`, byte by byte with
    `pause` seconds between them (a host that dribbles), and records what it was sent."""

    def __init__(self, answer: bytes, pause: float = 0.0) -> None:
        self.answer, self.pause = answer, pause
        self.head = b""  # sent at once, before `answer`
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/acme/pipelines.git"

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            self.received = conn.recv(65536)
            try:
                conn.sendall(self.head)
                for i in range(len(self.answer)):
                    conn.sendall(self.answer[i : i + 1])
                    time.sleep(self.pause)
            except OSError:
                pass


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else() -> None:
    raw = RawHost(
        b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.2/elsewhere.git/info/refs\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    with pytest.raises(InvalidInput, match=r"moved \(301 to http://127.0.0.2/elsewhere"):
        heads.branch_head(heads.Ask(raw.url, "main", GH_TOKEN))
    assert b"GET /acme/pipelines.git/info/refs?service=git-upload-pack" in raw.received


OK_HEADER = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\r\n"


def test_a_host_that_dribbles_its_answer_is_cut_off_at_the_deadline() -> None:
    raw = RawHost(b"001e# service=git-upload-pack\n0000" + b"0" * 100, pause=0.05)
    raw.head = OK_HEADER  # the headers at once, then the refs a byte at a time
    with pytest.raises(Unavailable, match="took too long"):
        heads.branch_head(heads.Ask(raw.url, "main", GH_TOKEN, timeout_s=1.0))


def test_a_host_that_dribbles_its_headers_is_given_up_by_the_sweeper(
    yard: Yard, caplog: pytest.LogCaptureFixture
) -> None:
    raw = RawHost(OK_HEADER, pause=0.5)
    api_url = raw.url.removesuffix(f"/{REPO}.git") + "/api/v3"
    fields = {"repo": REPO, "branch": "main", "api_url": api_url}
    usecases.github.link(yard.ctl, ADMIN, WS, fields, GH_TOKEN)
    sweep = Sweeper(
        yard.ctl.db, yard.ctl.github_credentials, yard.clock, 1.0, lambda: None
    )  # the real ask
    assert sweep.sweep() == []
    [unknown] = [r for r in caplog.records if r.getMessage() == "github sweep: branch head unknown"]
    assert unknown.__dict__["error"] == "the host did not answer within 1 s"
    assert sweep.sweep() == []  # still dribbling: not asked twice at once
    errors = [r.__dict__["error"] for r in caplog.records if "head unknown" in r.getMessage()]
    assert errors[1] == "the previous question to the host has not ended yet"


def test_only_the_holder_of_the_lease_sweeps_and_a_stale_holders_record_is_refused(
    yard: Yard,
) -> None:
    """Several servers on one database: the `github-sweep` lease decides who asks GitHub;
    a holder paused past its expiry asks once more at most, and records nothing."""
    link_id = link(yard)
    host = Host()
    host.heads[REPO] = HEAD
    mine = yard.ctl.leases.guard(leases.GITHUB_SWEEP)
    sweep = Sweeper(
        yard.ctl.db, yard.ctl.github_credentials, yard.clock, 60.0, lambda: None, ask=host,
        lease=mine,
    )  # fmt: skip
    other_clock = FakeClock(yard.clock.now())
    other = leases.Leases(yard.ctl.db, other_clock, "other-server:1:00", 10.0)
    assert other.hold(leases.GITHUB_SWEEP, None) == 1
    mine.refresh()
    sweep.step()  # the first step never sweeps (start-up)
    sweep.step()
    assert host.asked == [] and rows(yard) == []  # the other server's work

    assert other.release(leases.GITHUB_SWEEP, 1)
    mine.refresh()
    other_clock.advance(11)  # this server paused past its expiry: the other takes over
    assert other.hold(leases.GITHUB_SWEEP, None) == 3
    sweep.step()
    assert len(host.asked) == 1 and rows(yard) == []  # asked, but its record was refused

    assert other.release(leases.GITHUB_SWEEP, 3)
    mine.refresh()
    sweep.step()
    assert rows(yard) == [(sweeper.delivery_id(link_id, HEAD), "sweep", "deploy", "received", HEAD)]
