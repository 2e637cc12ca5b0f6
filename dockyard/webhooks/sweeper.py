"""The sweeper: self-healing for webhooks GitHub never sent, sent while the server was down,
or that a proxy lost (docs/github.md, "Sweeper").

GitHub never redelivers a failed delivery by itself. So every `DOCKYARD_GITHUB_SWEEP_S`
seconds (±20 % jitter, so that many servers never ask GitHub in step) the sweeper asks each
linked repository for its branch head, cheaply (`heads.branch_head`: the ref advertisement,
not a fetch), and compares it with the link's `last_processed_head`. When they differ and no
deploy delivery of the link is already waiting, it records a synthetic delivery — event
`sweep`, kind `deploy`, id `sweep-<link id>-<sha>` — and wakes the processor. From there a
healed push is processed exactly as a webhook's: the same deploy of the head fetched then,
the same feedback on GitHub, the same history in `workspace info`.

Choices:
- **One attempt per head.** The delivery id is derived from the head, and ids are unique per
  workspace (`deliveries.record`), so a head whose deploy failed (an import error, a
  clear-text secret) is swept once, never every minute: the next push gets its own attempt.
- **A host that does not answer** is logged once per link per pass and changes nothing; the
  next pass asks again, so the link heals once the host is back.
- **Bounded passes.** Each link's question is given up after `heads.TIMEOUT_S` (or the
  interval, if shorter) whatever the host does, and that link is not asked again while the
  abandoned question lingers; a pass stops asking once it has taken one interval, and the
  next pass starts with the links this one did not reach (round robin by link id), so many
  slow links delay each other, never stop.
- **Not at start-up.** The first pass comes one interval after the server starts: stored
  deliveries (and a crash's leftovers) are processed first.
- One sweeper per server process, started and stopped with the processor (`wiring.py`).
  With several servers on one database, only the holder of the `github-sweep` lease
  (`controller/leases.py`) sweeps and asks for redelivery, so GitHub is asked once per pass,
  not once per server; the delivery it records is fenced by the lease's epoch.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from dockyard.clock import Clock
from dockyard.controller import leases
from dockyard.controller.github_credentials import Credentials
from dockyard.controller.loop import Loop
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import GithubDelivery, GithubLink, Workspace
from dockyard.errors import Unavailable
from dockyard.webhooks import deliveries, deploying, heads, redelivery
from dockyard.webhooks.events import Classified

log = logging.getLogger(__name__)

EVENT = "sweep"
JITTER = 0.2
AskHead = Callable[[heads.Ask], str]


def jittered(interval_s: float, rng: random.Random) -> float:
    """`interval_s` give or take 20 %, drawn anew for every pass."""
    return interval_s * rng.uniform(1 - JITTER, 1 + JITTER)


def delivery_id(link_id: int, sha: str) -> str:
    """The synthetic delivery's id: one per link and head, so one attempt per head."""
    return f"sweep-{link_id}-{sha}"


def decide(head: str, last_processed: str | None, busy: bool, attempted: bool) -> bool:
    """Whether a head seen on the host is to be processed: it is not the last processed one,
    no deploy delivery of the link is waiting (it will fetch the head anyway), and the
    sweeper has not already tried this head."""
    return head != last_processed and not busy and not attempted


def rotate(ids: list[int], after: int) -> list[int]:
    """`ids` in order, starting with the first one after `after` and wrapping round."""
    ordered = sorted(ids)
    return [i for i in ordered if i > after] + [i for i in ordered if i <= after]


@dataclass(frozen=True, slots=True)
class _Link:
    link_id: int
    workspace: str
    repo: str
    branch: str
    api_url: str


class Sweeper(Loop):
    name = "github-sweep"

    def __init__(
        self,
        db: Database,
        credentials: Credentials,
        clock: Clock,
        interval_s: float,
        wake: Callable[[], None],
        ask: AskHead = heads.branch_head,
        rng: random.Random | None = None,
        lease: leases.Guard | None = None,
    ) -> None:
        super().__init__()
        self.db = db
        self.credentials = credentials
        self.clock = clock
        self.interval_s = interval_s
        self.wake_processor = wake
        self.ask = ask
        self.rng = rng or random.SystemRandom()
        self.link_timeout_s = min(heads.TIMEOUT_S, max(interval_s, 1.0))
        self._cursor = 0  # the last link asked: the next pass starts after it
        self._asking: set[int] = set()  # links whose question has not ended yet
        self._started = False
        self.lease = lease
        self._fence: leases.Fence | None = None  # the lease's epoch during a pass

    def step(self) -> float:
        if self._started:
            self._leased_sweep()
        self._started = True
        return jittered(self.interval_s, self.rng)

    def _leased_sweep(self) -> None:
        """A pass if this process holds the lease (or has none to hold); else skip it: the
        holder sweeps, and this one is woken if it takes the lease over."""
        if self.lease is None:
            self.sweep()
            return
        self._fence = self.lease.held()
        if self._fence is None:
            return
        try:
            self.sweep()
        except leases.LeaseLost as exc:
            log.warning(exc.message, extra={"action": "github_sweep"})
        finally:
            self._fence = None

    def sweep(self) -> list[str]:
        """One pass; returns the ids of the deliveries it recorded."""
        stop_at = time.monotonic() + self.interval_s
        links = {link.link_id: link for link in self._links()}
        recorded: list[str] = []
        for link_id in rotate(list(links), self._cursor):
            if self._stop.is_set():  # the server is stopping: do not hold it up
                break
            if time.monotonic() > stop_at:
                log.warning(
                    "github sweep pass cut short; the next pass goes on from here",
                    extra={"action": "github_sweep", "next_link": link_id},
                )
                break
            self._cursor = link_id
            found = self._sweep_link(links[link_id])
            if found is not None:
                recorded.append(found)
        if recorded:
            self.wake_processor()
        self._redeliver()
        return recorded

    def _redeliver(self) -> None:
        """With a GitHub App, ask GitHub to send again what it failed to deliver (bounded per
        App: `redelivery.py`); token links have no delivery log to read."""
        if self._stop.is_set():
            return
        if self._fence is not None:
            self._fence.check()  # asking GitHub cannot be fenced: checked just before
        try:
            redelivery.redeliver_all(self.credentials, self.db, self.clock)
        except Exception as exc:  # noqa: BLE001 (a failing App must not end the pass)
            log.warning(
                "github redelivery failed",
                extra={"action": "github_redeliver", "error": str(exc)[:300]},
            )

    def _links(self) -> list[_Link]:
        with self.db.session() as session:
            rows = session.scalars(select(GithubLink).order_by(GithubLink.id)).all()
            return [
                _Link(r.id, _workspace_name(session, r), r.repo, r.branch, r.api_url)
                for r in rows
            ]  # fmt: skip

    def _sweep_link(self, link: _Link) -> str | None:
        try:
            token = self.credentials.token(link.link_id)
            url = deploying.clone_url(link.api_url, link.repo)
            head = self._within(
                link.link_id, heads.Ask(url, link.branch, token, self.link_timeout_s)
            )
        except Exception as exc:  # noqa: BLE001 (a hostile or absent host must not end the pass)
            log.warning(
                "github sweep: branch head unknown",
                extra={
                    "action": "github_sweep",
                    "workspace": link.workspace,
                    "repo": link.repo,
                    "error": str(exc)[:300] or type(exc).__name__,
                },
            )
            return None
        return self._record(link.link_id, head)

    def _within(self, link_id: int, ask: heads.Ask) -> str:
        """`self.ask(ask)`, given up after its timeout whatever the host does (`heads` bounds
        the reading of the answer, not a host that dribbles its headers): the question goes
        on in its own thread, and that link is not asked again until it has ended."""
        if link_id in self._asking:
            raise Unavailable("the previous question to the host has not ended yet")
        answer: list[str] = []
        failure: list[BaseException] = []
        ended = threading.Event()

        def run() -> None:
            try:
                answer.append(self.ask(ask))
            except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
                failure.append(exc)
            finally:
                self._asking.discard(link_id)
                ended.set()

        self._asking.add(link_id)
        threading.Thread(target=run, name=f"{self.name}-{link_id}", daemon=True).start()
        if not ended.wait(ask.timeout_s):
            raise Unavailable(f"the host did not answer within {ask.timeout_s:g} s")
        if failure:
            raise failure[0]
        return answer[0]

    def _record(self, link_id: int, head: str) -> str | None:
        """Record the sweep delivery if `decide` says so, with the link as it is now."""
        ident = delivery_id(link_id, head)
        with self.db.session() as session:
            if self._fence is not None:
                self._fence(session)
            row = session.get(GithubLink, link_id)
            if row is None:  # unlinked during the pass
                return None
            busy, attempted = _busy(session, link_id), _attempted(session, row, ident)
            if not decide(head, row.last_processed_head, busy, attempted):
                return None
            classified = Classified(
                "deploy", deliveries.RECEIVED, repo=row.repo,
                ref=f"refs/heads/{row.branch}", head_sha=head, after_sha=head,
            )  # fmt: skip
            _, new = deliveries.record(session, row, ident, EVENT, classified, self.clock.now())
        if not new:
            return None
        log.info(
            "github sweep: a head no delivery brought",
            extra={"action": "github_sweep", "delivery": ident, "link": link_id},
        )
        return ident


def _workspace_name(session: Session, link: GithubLink) -> str:
    ws = session.get(Workspace, link.workspace_id)
    return ws.name if ws else ""


def _busy(session: Session, link_id: int) -> bool:
    """Whether a deploy delivery of the link is waiting or being processed."""
    waiting = exists().where(
        GithubDelivery.link_id == link_id,
        GithubDelivery.kind == "deploy",
        GithubDelivery.status.in_((deliveries.RECEIVED, deliveries.PROCESSING)),
    )
    return bool(session.scalar(select(waiting)))


def _attempted(session: Session, link: GithubLink, ident: str) -> bool:
    found = exists().where(
        GithubDelivery.workspace_id == link.workspace_id, GithubDelivery.delivery_id == ident
    )
    return bool(session.scalar(select(found)))
