"""What processing a pull request does: the dry-run plan of merging its head commit into the
linked workspace — what `dockyard deploy --dry-run` would print for that commit — and what the
outcome says (a summary for the commit status, the plan as Markdown for the check run and the
one PR comment, the dashboard page).

The head is fetched from `refs/pull/<n>/head` (a fork's commits are reachable only there) into
the workspace's source mirror, built and checked exactly as a deploy is
(`gitsource.plan_from_git`), and planned against the deployed manifest. Nothing is written:
no commit, no job changed, no source commit marked deployed; a plan never blocks or moves a
deploy of the branch.
"""

from dockyard.controller import plantext
from dockyard.controller.assembly import Controller
from dockyard.controller.gitsource import SourcePlan, plan_from_git
from dockyard.webhooks.deploying import MESSAGE_MAX, dashboard_url, source_of
from dockyard.webhooks.processing import LinkTarget, Outcome, PlanHead, PullRequest

NOT_A_DEPLOY = (
    "Nothing was deployed: this is a plan. Fix the commit and push it to the pull request."
)


def plan_head(ctl: Controller) -> PlanHead:
    """The processor's `plan_head`, bound to this controller."""

    def plan(link: LinkTarget, pr: PullRequest) -> Outcome:
        done = plan_from_git(ctl, link.workspace, source_of(link), pr.number, pr.head_sha)
        return outcome(done, link, pr, ctl.settings.base_url)

    return plan


def outcome(done: SourcePlan, link: LinkTarget, pr: PullRequest, base_url: str) -> Outcome:
    """What a pull request's plan says, in every form."""
    sha = (done.source_sha or pr.head_sha)[:12]
    page = dashboard_url(base_url, link.workspace)
    if done.status == "failed" or done.plan is None:
        return Outcome(
            False,
            plantext.clip(f"#{pr.number} {sha} cannot be deployed: {done.reason}", MESSAGE_MAX),
            done.source_sha,
            plantext.clip(done.reason, plantext.SUMMARY_MAX),
            plantext.failure(
                f"Pull request #{pr.number} ({sha}) cannot be deployed to {link.workspace}",
                done.reason,
                NOT_A_DEPLOY,
            ),
            page,
        )
    schedules = list(done.schedules)
    summary = plantext.summary(done.plan, schedules)
    said = f"plan for #{pr.number} at {sha}: {summary}" + (
        f" ({done.reason})" if done.reason else ""
    )
    return Outcome(
        True,
        plantext.clip(said, MESSAGE_MAX),
        done.source_sha,
        summary,
        plantext.details(
            f"Merging #{pr.number} ({sha}) would deploy to {link.workspace}",
            done.plan,
            schedules,
            page,
            _notes(done),
        ),
        page,
    )


def _notes(done: SourcePlan) -> list[str]:
    parts = " and ".join(done.changed_parts)
    notes = [f"dry run: would change {parts}" if parts else "nothing changed: no new version"]
    against = (done.workspace_sha or "")[:12]
    notes.append(
        f"Planned against the deployed version {against}."
        if against
        else "Nothing is deployed yet."
    )
    if done.reason:
        notes.append(done.reason)
    return notes
