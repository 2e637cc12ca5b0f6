"""What processing a push does: deploy the linked branch's head, fetched now, through
`controller/gitsource.py` — the same path whether a delivery, a replay or (later) the sweeper
asked. The outcome is one line for the delivery rows and `workspace info`.
"""

from urllib.parse import urlsplit

from dockyard.controller.assembly import Controller
from dockyard.controller.gitsource import GitSource, deploy_from_git
from dockyard.webhooks.processing import DeployHead, LinkTarget, Outcome

GITHUB_API = "api.github.com"


def clone_url(api_url: str, repo: str) -> str:
    """Where the link's repository is fetched from: `https://github.com/OWNER/NAME.git` for
    github.com's API; for GitHub Enterprise Server (`https://HOST/api/v3`) its host,
    `https://HOST/OWNER/NAME.git` — the same rule serves a loopback test host."""
    parts = urlsplit(api_url)
    if parts.netloc == GITHUB_API:
        return f"https://github.com/{repo}.git"
    base = parts.path.rstrip("/").removesuffix("/api/v3")
    return f"{parts.scheme}://{parts.netloc}{base}/{repo}.git"


def deploy_head(ctl: Controller) -> DeployHead:
    """The processor's `deploy_head`, bound to this controller."""

    def deploy(link: LinkTarget) -> Outcome:
        source = GitSource(
            clone_url(link.api_url, link.repo),
            link.branch,
            link.path,
            credential=lambda: link.credential,
            name=link.repo,
        )
        done = deploy_from_git(ctl, link.workspace, source)
        head = done.source_sha
        if done.status == "failed":
            return Outcome(False, done.reason, None)
        if done.status == "unchanged":
            return Outcome(True, f"unchanged: {done.reason}", head)
        deployed = (done.workspace_sha or "")[:12]
        return Outcome(True, f"deployed {(head or '')[:12]} as {deployed}: {done.summary}", head)

    return deploy
