"""What GitHub shows of each processing: a commit status per commit (token links) or a
check run (App links), and one pull request comment per workspace (docs/github.md,
"Feedback on GitHub").

- `begin`: `pending` on every commit the work names ("dockyard: deploying…" or
  "planning…"), context `dockyard/<workspace>`, so a commit shows at once that it was seen.
- `end` of a deploy: the deployed head gets `success` with the outcome's summary and a link
  (`target_url`), or every named commit gets `failure` with the one-line reason. A commit a
  delivery named that is not the head deployed (the branch moved on before processing: the
  head fetched then is what is deployed, never an older commit) gets `success` saying so —
  "superseded: <head> deployed" — because it was never left out, its history was deployed
  with the newer head; and no commit this set `pending` is left `pending`.
- `end` of a plan: the pull request's head commit gets the same status, and the one comment
  of this workspace (found by a hidden marker at its start) is written or **edited in
  place** with the outcome's details (Markdown), never posted twice.

App links get check runs instead of statuses (GitHub lets only Apps write checks): `begin`
creates one per commit, named `dockyard/<workspace>`, `in_progress`; `end` completes it
(`PATCH`) with the conclusion — `success` or `failure`, and `neutral` for a superseded commit
(its content was deployed with the newer head, so not a failure, but it was not itself what
was deployed; GitHub counts `neutral` as passing for required checks, so nothing is blocked,
where `skipped` would say dockyard never looked at it) — `output.title` the summary,
`output.summary` the details (Markdown, cut to GitHub's 65,535 characters), `details_url`
the outcome's page. The run ids live in memory from `begin` to `end` of one processing; an
`end` without its `begin` (that call failed) creates the run already completed.

Every call is tried even if an earlier one failed; the failures are raised together as one
`GitHubError`, which the processor logs. Feedback never changes a delivery's outcome.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

from dockyard.controller import github_api
from dockyard.controller.github_api import Check, GitHubApi, GitHubError
from dockyard.webhooks.processing import LinkTarget, Outcome, Work

log = logging.getLogger(__name__)

MAX_SHAS = 20
"""Commits told per processing at most (each is one request of up to 10 s); the newest
named commits are kept: the older ones got their status from an earlier processing."""
MARKER = "<!-- dockyard:plan:{workspace} -->"

ClientFor = Callable[[LinkTarget], GitHubApi]


def client_for(link: LinkTarget) -> GitHubApi:
    return github_api.for_link(link.api_url, link.repo, link.resolve)


def context(link: LinkTarget) -> str:
    return f"dockyard/{link.workspace}"


def marker(link: LinkTarget) -> str:
    return MARKER.format(workspace=link.workspace)


def comment_body(link: LinkTarget, sha: str, outcome: Outcome) -> str:
    """The marker, the plan (or why there is none), and which commit it is for."""
    text = outcome.details or outcome.message
    head = "" if outcome.ok else "**dockyard could not plan this commit**\n\n"
    foot = f"\n\n<sub>dockyard · workspace `{link.workspace}` · commit {sha[:12]}</sub>"
    return f"{marker(link)}\n{head}{text}{foot}\n"


class StatusFeedback:
    """Commit statuses and the plan comment, through the link's own credential."""

    def __init__(self, client: ClientFor = client_for, base_url: str = "") -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.checks = CheckRuns()

    def _with_link(self, link: LinkTarget, work: Work, outcome: Outcome) -> Outcome:
        """Until an outcome names its own page, a deploy links to the workspace's deployments."""
        if outcome.url or work.kind != "deploy" or not self.base_url:
            return outcome
        url = f"{self.base_url}/ui/w/{quote(link.workspace, safe='')}/deployments"
        return replace(outcome, url=url)

    def begin(self, link: LinkTarget, work: Work) -> None:
        word = "planning…" if work.kind == "plan" else "deploying…"
        api = self.client(link)
        if link.credential_kind == "app":
            _raise(self.checks.begin(api, link, _named(work)))
            return
        self._all(
            [(sha, "pending", f"dockyard: {word}", None) for sha in _named(work)],
            lambda sha, state, text, url: api.create_status(sha, state, context(link), text, url),
        )

    def end(self, link: LinkTarget, work: Work, outcome: Outcome) -> None:
        api = self.client(link)
        outcome = self._with_link(link, work, outcome)
        statuses = final_statuses(work, outcome)
        if link.credential_kind == "app":
            failures = self.checks.end(api, link, work, outcome, statuses)
        else:
            failures = self._collect(
                statuses,
                lambda sha, state, text, url: api.create_status(
                    sha, state, context(link), text, url
                ),
            )
        pr = work.pull_request
        if work.kind == "plan" and pr is not None:
            body = comment_body(link, pr.head_sha, outcome)
            try:
                upsert_comment(api, pr.number, marker(link), body)
            except GitHubError as exc:
                failures.append(exc.message)
        _raise(failures)

    def _all(self, calls: list[tuple[str, str, str, str | None]], post: "Post") -> None:
        _raise(self._collect(calls, post))

    @staticmethod
    def _collect(calls: list[tuple[str, str, str, str | None]], post: "Post") -> list[str]:
        failures = []
        for sha, state, text, url in calls:
            try:
                post(sha, state, text, url)
            except GitHubError as exc:
                failures.append(exc.message)
        return failures


Post = Callable[[str, str, str, str | None], None]


def _named(work: Work) -> list[str]:
    """The distinct commits the work names, the newest `MAX_SHAS` (deliveries come in order)."""
    return list(dict.fromkeys(work.shas))[-MAX_SHAS:]


def final_statuses(work: Work, outcome: Outcome) -> list[tuple[str, str, str, str | None]]:
    """(sha, state, description, target_url) for the end of a processing."""
    named = _named(work)
    reason = outcome.summary or outcome.message
    if not outcome.ok:
        failed = [*named, *([outcome.head] if outcome.head and outcome.head not in named else [])]
        return [(sha, "failure", reason, outcome.url) for sha in failed]
    if outcome.head is None:
        return [(sha, "success", reason, outcome.url) for sha in named]
    done = "planned" if work.kind == "plan" else "deployed"
    newer = f"superseded: {outcome.head[:12]}, a newer commit, was {done}"
    others = [(sha, "success", newer, outcome.url) for sha in named if sha != outcome.head]
    return [*others, (outcome.head, "success", reason, outcome.url)]


def upsert_comment(api: GitHubApi, number: int, mark: str, body: str) -> None:
    """Edit the comment that starts with `mark`, or post it if there is none yet."""
    for comment in api.comments(number):
        if comment.body.lstrip().startswith(mark):
            if comment.body != body:
                api.edit_comment(comment.id, body)
            return
    api.create_comment(number, body)


def _raise(failures: list[str]) -> None:
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise GitHubError(failures[0] + more)


class CheckRuns:
    """The check runs `begin` created, by (link, commit), until `end` completes them."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def begin(self, api: GitHubApi, link: LinkTarget, shas: list[str]) -> list[str]:
        failures = []
        for sha in shas:
            try:
                run_id = api.create_check_run(context(link), sha, "in_progress")
            except GitHubError as exc:
                failures.append(exc.message)
                continue
            with self._lock:
                self._open[(link.link_id, sha)] = run_id
        return failures

    def end(
        self,
        api: GitHubApi,
        link: LinkTarget,
        work: Work,
        outcome: Outcome,
        statuses: list[tuple[str, str, str, str | None]],
    ) -> list[str]:
        failures = []
        for sha, state, title, url in statuses:
            with self._lock:
                run_id = self._open.pop((link.link_id, sha), None)
            check = Check(context(link), conclusion(state, sha, outcome), title, "", url)
            summary = check_summary(check, sha, work, outcome)
            try:
                api.complete_check_run(run_id, sha, replace(check, summary=summary))
            except GitHubError as exc:
                failures.append(exc.message)
        return failures


def conclusion(state: str, sha: str, outcome: Outcome) -> str:
    """A status's state as a check run's conclusion: a superseded commit is `neutral`."""
    if state == "success" and outcome.head is not None and sha != outcome.head:
        return "neutral"
    return "success" if state == "success" else "failure"


def check_summary(check: Check, sha: str, work: Work, outcome: Outcome) -> str:
    """The check run's Markdown: the outcome's details for the commit it is about, else what
    the title says (a superseded commit, a failure's reason)."""
    if check.conclusion == "neutral":
        return f"{check.title}. This commit's changes are part of what was deployed."
    text = outcome.details or outcome.message
    if check.conclusion == "failure" and outcome.message not in text:
        text = f"{outcome.message}\n\n{text}"
    return text or check.title
