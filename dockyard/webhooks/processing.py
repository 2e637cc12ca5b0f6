"""The loop that processes stored deliveries, after the receiver has answered.

It picks every `received` delivery, after a restart too (`recover` first puts back what a
crash left in `processing`), groups them (`deliveries.pending`) and calls, outside any
transaction:

- `deploy_head(link)` once for all the pushes of a link: it deploys the linked branch's head
  *as fetched at processing time*, so three deliveries for one commit give one deployment
  and a late or out-of-order delivery can never move the workspace back to an older commit;
- `plan_head(link, pull_request)` once per pull request head commit.

Both are injected (`wiring.py`): `deploy_head` is `deploying.deploy_head`, which deploys
through `controller/gitsource.py`; `plan_head` is `planning.plan_head` (the dry-run plan of
the pull request's head, nothing written). Without one, the default records the deliveries as
`failed` with an outcome that says planning is not built.

Around each, `feedback.begin(link, work)` and `feedback.end(link, work, outcome)` tell GitHub
(a commit status or check run, a pull request comment); the default tells no one. Feedback
never changes an outcome: a failure to post is logged, the delivery keeps its result.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session

from dockyard import crashpoints
from dockyard.clock import Clock
from dockyard.controller.github_credentials import Credentials
from dockyard.controller.keys import Keyring
from dockyard.controller.loop import Loop
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import GithubLink, Workspace
from dockyard.webhooks import deliveries

log = logging.getLogger(__name__)

NOT_BUILT_PLAN = "planning pull requests from GitHub is not built yet"
INTERVAL_S = 10.0
"""A backstop: every stored delivery wakes the loop at once (after its 202 is sent)."""


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What processing needs of a link. `credential` is the token to use now — the link's
    own, or an App installation token minted on demand (`github_credentials`) — clear here,
    in memory, and nowhere else; callers never branch on `credential_kind` to get it."""

    workspace: str
    repo: str
    branch: str
    path: str
    api_url: str
    credential_kind: str  # token | app (feedback: commit statuses or check runs)
    resolve: Callable[[], str] = field(repr=False)
    last_processed_head: str | None
    link_id: int = 0

    @property
    def credential(self) -> str:
        return self.resolve()


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    message: str  # one line, stored on every delivery of the group and shown by `info`
    head: str | None = None  # the commit deployed (a deploy's fetched head)
    summary: str = ""  # short, for a commit status description or a check run's title
    details: str = ""  # Markdown: the plan, for a check run's summary or a PR comment
    url: str | None = None  # where the dashboard shows it (the deployment page)


@dataclass(frozen=True, slots=True)
class PullRequest:
    number: int
    head_sha: str

    @property
    def ref(self) -> str:
        return f"refs/pull/{self.number}/head"


@dataclass(frozen=True, slots=True)
class Work:
    """What one processing does: a deploy of the branch head for the pushes that named
    `shas`, or the plan of one pull request's head commit."""

    kind: str  # deploy | plan
    shas: tuple[str, ...]
    pull_request: PullRequest | None = None


class Feedback(Protocol):
    def begin(self, link: LinkTarget, work: Work) -> None: ...

    def end(self, link: LinkTarget, work: Work, outcome: Outcome) -> None: ...


class NoFeedback:
    def begin(self, link: LinkTarget, work: Work) -> None:
        return None

    def end(self, link: LinkTarget, work: Work, outcome: Outcome) -> None:
        return None


DeployHead = Callable[[LinkTarget], Outcome]
PlanHead = Callable[[LinkTarget, PullRequest], Outcome]


def plan_not_built(_link: LinkTarget, _pr: PullRequest) -> Outcome:
    return Outcome(False, NOT_BUILT_PLAN)


def pull_request(ref: str | None, head_sha: str | None) -> PullRequest | None:
    """The pull request a plan group is for, from its stored `refs/pull/<n>/head`."""
    number = (ref or "").removeprefix("refs/pull/").removesuffix("/head")
    if not head_sha or not number.isdigit():
        return None
    return PullRequest(int(number), head_sha)


class Processor(Loop):
    name = "github-deliveries"

    def __init__(
        self,
        db: Database,
        keys: Keyring,
        clock: Clock,
        deploy_head: DeployHead,
        plan_head: PlanHead = plan_not_built,
        feedback: Feedback | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__()
        self.db = db
        self.keys = keys
        self.clock = clock
        self.credentials = credentials or Credentials(db, keys, clock)
        self.deploy_head = deploy_head
        self.plan_head = plan_head
        self.feedback: Feedback = feedback or NoFeedback()

    def recover(self) -> None:
        with self.db.session() as session:
            count = deliveries.recover(session)
        if count:
            log.info("deliveries resumed", extra={"action": "github_recover", "count": count})

    def step(self) -> float:
        with self.db.session() as session:
            groups = deliveries.pending(session)
        for group in groups:
            crashpoints.reached("delivery_unprocessed")
            self.process(group)
        return INTERVAL_S

    def process(self, group: deliveries.Group) -> None:
        with self.db.session() as session:
            ids = deliveries.claim(session, group.ids)
            link = session.get(GithubLink, group.link_id) if ids else None
            target = self._target(session, link) if link else None
        if not ids:
            return
        if target is None:
            self._finish(ids, Outcome(False, "the workspace was unlinked before processing"))
            return
        pr = pull_request(group.ref, group.head_sha) if group.kind == "plan" else None
        if group.kind == "deploy":
            work = Work("deploy", group.shas)
            self._tell("begin", self.feedback.begin, target, work)
            outcome = self.deploy_head(target)
        elif group.kind == "plan" and pr is not None:
            work = Work("plan", (pr.head_sha,), pr)
            self._tell("begin", self.feedback.begin, target, work)
            outcome = self.plan_head(target, pr)
        else:
            outcome = Outcome(False, f"a {group.kind!r} delivery has nothing to process")
            self._finish(ids, outcome)
            return
        self._finish(ids, outcome, group.link_id if group.kind == "deploy" else None)
        self._tell("end", self.feedback.end, target, work, outcome)

    @staticmethod
    def _tell(step: str, call: Callable[..., None], *args: object) -> None:
        """Feedback to GitHub is best effort: a failure is logged, never raised."""
        try:
            call(*args)
        except Exception as exc:  # noqa: BLE001 (any failure to post must not lose the outcome)
            log.warning(
                "github feedback failed",
                extra={"action": "github_feedback", "step": step, "error": str(exc)[:300]},
            )

    def _target(self, session: Session, link: GithubLink) -> LinkTarget:
        ws = session.get(Workspace, link.workspace_id)
        return LinkTarget(
            workspace=ws.name if ws else "",
            repo=link.repo,
            branch=link.branch,
            path=link.path,
            api_url=link.api_url,
            credential_kind=link.credential_kind,
            resolve=self.credentials.for_link(session, link),
            last_processed_head=link.last_processed_head,
            link_id=link.id,
        )

    def _finish(self, ids: list[int], outcome: Outcome, deployed_link: int | None = None) -> None:
        message = outcome.message
        if len(ids) > 1:
            message += f" (one processing for {len(ids)} deliveries)"
        now = self.clock.now()
        with self.db.session() as session:
            status = deliveries.DONE if outcome.ok else deliveries.FAILED
            deliveries.finish(session, ids, status, message, now)
            link = session.get(GithubLink, deployed_link) if deployed_link else None
            if link is not None and outcome.ok and outcome.head:
                link.last_processed_head = outcome.head
                link.last_processed_at = now
        log.info(
            "deliveries processed",
            extra={"action": "github_process", "deliveries": ids, "ok": outcome.ok},
        )
