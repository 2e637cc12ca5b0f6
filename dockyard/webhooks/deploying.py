"""What processing a push does: deploy the linked branch's head, fetched now, through
`controller/gitsource.py` — the same path whether a delivery, a replay or (later) the sweeper
asked — and what the outcome says: one line for the delivery rows and `workspace info`, a
summary for a commit status ("2 added, 1 updated; next run daily_load 2026-12-04 06:00 UTC"),
Markdown details (the plan, schedule changes and next runs; for a refusal the one-line reason,
which names the file and key or file:line, and the fix) and the dashboard page of the
deployment. The words come from `controller/plantext.py`, as `deploy --dry-run`'s do.
"""

from urllib.parse import quote, urlsplit

from dockyard.controller import audit, plantext
from dockyard.controller.assembly import Controller
from dockyard.controller.gitsource import GitSource, SourceDeploy, deploy_from_git
from dockyard.controller.usecases import deployments
from dockyard.webhooks.processing import DeployHead, LinkTarget, Outcome

GITHUB_API = "api.github.com"
MESSAGE_MAX = 1000  # a delivery row's outcome


def clone_url(api_url: str, repo: str) -> str:
    """Where the link's repository is fetched from: `https://github.com/OWNER/NAME.git` for
    github.com's API; for GitHub Enterprise Server (`https://HOST/api/v3`) its host,
    `https://HOST/OWNER/NAME.git` — the same rule serves a loopback test host."""
    parts = urlsplit(api_url)
    if parts.netloc == GITHUB_API:
        return f"https://github.com/{repo}.git"
    base = parts.path.rstrip("/").removesuffix("/api/v3")
    return f"{parts.scheme}://{parts.netloc}{base}/{repo}.git"


def source_of(link: LinkTarget) -> GitSource:
    return GitSource(
        clone_url(link.api_url, link.repo),
        link.branch,
        link.path,
        credential=lambda: link.credential,
        name=link.repo,
    )


def dashboard_url(
    base_url: str, workspace: str, old: str | None = None, new: str | None = None
) -> str:
    """The workspace's deployments page; with `old` and `new`, the diff between them."""
    page = f"{base_url}/ui/w/{quote(workspace, safe='')}/deployments"
    return f"{page}?old={old}&new={new}#diff" if old and new else page


def deploy_head(ctl: Controller) -> DeployHead:
    """The processor's `deploy_head`, bound to this controller."""

    def deploy(link: LinkTarget) -> Outcome:
        done = deploy_from_git(ctl, link.workspace, source_of(link))
        if done.status == "deployed":
            detail = {
                "source": f"{link.repo}@{done.source_sha}",
                "previous": done.previous_sha,
                "summary": done.summary,
            }
            actor = audit.named(audit.GITHUB)
            deployments.record_deploy(ctl, link.workspace, actor, done.workspace_sha, detail)
        return outcome(done, link, ctl.settings.base_url)

    return deploy


def outcome(done: SourceDeploy, link: LinkTarget, base_url: str) -> Outcome:
    """What a deploy from the linked branch says, in every form."""
    head = done.source_sha
    commit = f"{link.repo}@{(head or '')[:12]}" if head else link.repo
    page = dashboard_url(base_url, link.workspace)
    if done.status == "failed":
        return Outcome(
            False,
            plantext.clip(done.reason, MESSAGE_MAX),
            None,
            plantext.clip(done.reason, plantext.SUMMARY_MAX),
            plantext.failure(f"Deploying {commit} to {link.workspace} failed", done.reason),
            page,
        )
    if done.status == "unchanged" or done.plan is None:
        said = f"unchanged: {done.reason}"
        details = f"### {commit}: nothing to deploy\n\n{plantext.clip(done.reason, 2000)}\n"
        return Outcome(True, said, head, plantext.clip(said, plantext.SUMMARY_MAX), details, page)
    schedules = list(done.schedules)
    summary = plantext.summary(done.plan, schedules)
    url = dashboard_url(base_url, link.workspace, done.previous_sha, done.workspace_sha)
    deployed = (done.workspace_sha or "")[:12]
    title = f"Deployed {commit} to {link.workspace} as {deployed}"
    return Outcome(
        True,
        plantext.clip(f"deployed {(head or '')[:12]} as {deployed}: {summary}", MESSAGE_MAX),
        head,
        summary,
        plantext.details(title, done.plan, schedules, url),
        url,
    )
