"""The loop that processes stored deliveries, after the receiver has answered.

It picks every `received` delivery, after a restart too (`recover` first puts back what a
crash left in `processing`), groups them (`deliveries.pending`) and calls, outside any
transaction:

- `deploy_head(link)` once for all the pushes of a link: it deploys the linked branch's head
  *as fetched at processing time*, so three deliveries for one commit give one deployment
  and a late or out-of-order delivery can never move the workspace back to an older commit;
- `plan_head(link, sha)` once per pull request head commit.

Both are injected (`wiring.py`): `deploy_head` is `deploying.deploy_head`, which deploys
through `controller/gitsource.py`. Planning a pull request is not built yet: its default
records the deliveries as `failed` with an outcome that says so (docs/github.md).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from dockyard import crashpoints
from dockyard.clock import Clock
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
    """What processing needs of a link; the credential is clear here and nowhere else."""

    workspace: str
    repo: str
    branch: str
    path: str
    api_url: str
    credential_kind: str
    credential: str = field(repr=False)
    last_processed_head: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    message: str  # one line, stored on every delivery of the group and shown by `info`
    head: str | None = None  # the commit deployed (a deploy's fetched head)


DeployHead = Callable[[LinkTarget], Outcome]
PlanHead = Callable[[LinkTarget, str], Outcome]


def plan_not_built(_link: LinkTarget, _sha: str) -> Outcome:
    return Outcome(False, NOT_BUILT_PLAN)


class Processor(Loop):
    name = "github-deliveries"

    def __init__(
        self,
        db: Database,
        keys: Keyring,
        clock: Clock,
        deploy_head: DeployHead,
        plan_head: PlanHead = plan_not_built,
    ) -> None:
        super().__init__()
        self.db = db
        self.keys = keys
        self.clock = clock
        self.deploy_head = deploy_head
        self.plan_head = plan_head

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
        if group.kind == "deploy":
            outcome = self.deploy_head(target)
        elif group.kind == "plan" and group.head_sha:
            outcome = self.plan_head(target, group.head_sha)
        else:
            outcome = Outcome(False, f"a {group.kind!r} delivery has nothing to process")
        self._finish(ids, outcome, group.link_id if group.kind == "deploy" else None)

    def _target(self, session: Session, link: GithubLink) -> LinkTarget:
        ws = session.get(Workspace, link.workspace_id)
        return LinkTarget(
            workspace=ws.name if ws else "",
            repo=link.repo,
            branch=link.branch,
            path=link.path,
            api_url=link.api_url,
            credential_kind=link.credential_kind,
            credential=self.keys.unseal(link.sealed_credential).decode(),
            last_processed_head=link.last_processed_head,
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
