"""The shapes of the JSON API's answers, one pydantic model per resource, so `/openapi.json`
(and `/docs`) lists every field a client can read.

The use cases (`controller/usecases/`, `sealing`, `app_service`) build plain dicts; the routes
declare these models with `response_model_exclude_unset=True`, so an answer carries exactly
the keys its use case built: a key the use case leaves out (a dry run's missing `run`) is not
added as null. Every model allows extra keys (`extra="allow"`): FastAPI filters an answer
through its model, and a key a use case gains before its model does would otherwise vanish
from the answer without a sound. `tests/integration/test_api_shapes.py` checks both ways: real
answers equal what the use cases return, and every key they hold is declared here.

No model holds a secret: tokens are stored and shown as hashes and prefixes, except the clear
value of a token or public link in the one answer that creates it (`TokenCreated.token`,
`LinkCreated.token`), a GitHub link's webhook secret (`GithubLinkCreated.webhook_secret`)
and an alert webhook's generated secret (`AlertChannelCreated.webhook_secret`), each shown
that once by design.

Numbers that may be whole or fractional are `int | float`: a bare `float` would turn a stored
`60` into `60.0`.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Number = int | float


class Out(BaseModel):
    """Base of every answer: unknown keys pass through (see the module's docstring)."""

    model_config = ConfigDict(extra="allow")


# errors ----------------------------------------------------------------------------------
class Error(Out):
    """Every error's body (docs/api.md lists the codes)."""

    error: str = Field(description="one line for people: the problem and, if any, the fix")
    code: str = Field(description="a stable snake_case code for programs, e.g. not_found")


# the caller ------------------------------------------------------------------------------
class Me(Out):
    role: str
    workspace_id: int | None
    token_id: int | None


# workspaces ------------------------------------------------------------------------------
class Workspace(Out):
    name: str
    created_at: str
    reconciled_sha: str | None
    deployment_version: str | None
    configuration_version: str | None
    reconcile_error: str | None
    executor: str | None = Field(description="null: the server's default executor")
    description: str | None = Field(
        default=None,
        description="the first line of the deployed `__deployment__` module's docstring"
        " (listed and shown workspaces; absent in other answers)",
    )


class WorkspaceSettings(Workspace):
    """A workspace after a change of its settings."""

    effective_executor: str


class GithubDelivery(Out):
    delivery_id: str = Field(description="GitHub's X-GitHub-Delivery")
    event: str
    action: str | None
    ref: str | None
    head_sha: str | None
    status: str = Field(description="received, processing, done, ignored or failed")
    outcome: str | None = Field(description="what processing did, or why it was ignored")
    received_at: str


class GithubLink(Out):
    """A workspace's link to a GitHub repository; never its token or webhook secret."""

    workspace: str
    repo: str = Field(description="OWNER/NAME")
    branch: str
    path: str = Field(description="the workspace's folder in the repository; empty: its root")
    api_url: str
    credential_kind: str = Field(description="token, or app (a GitHub App's installation)")
    webhook_url: str
    created_at: str
    last_processed_head: str | None
    last_processed_at: str | None
    github_hook_id: int | None = Field(
        default=None, description="the webhook's id on GitHub, if dockyard created it"
    )


class GithubLinkInfo(GithubLink):
    last_delivery: GithubDelivery | None


class GithubLinkCreated(GithubLink):
    webhook_secret: str | None = Field(
        description="the webhook's secret, shown in this answer only (App links: only when"
        " the App was first stored; null: the App's webhook is already set)"
    )
    webhook_created: bool = Field(description="dockyard created the webhook on GitHub")
    webhook_reason: str | None = Field(description="why it did not (then paste it by hand)")
    app_id: int | None = Field(default=None, description="App links: the GitHub App's id")
    installation_id: int | None = Field(default=None, description="App links: the installation")
    app_webhook_url: str | None = Field(
        default=None, description="App links: the App's one webhook URL, for its settings"
    )
    app_created: bool | None = Field(
        default=None, description="App links: the App was stored by this link (first use)"
    )


class GithubUnlinked(Out):
    workspace: str
    repo: str
    unlinked: bool
    webhook_deleted: bool = Field(description="dockyard deleted the webhook it had created")
    webhook_reason: str | None = Field(description="why not (then delete it by hand)")
    credential_kind: str | None = Field(default=None, description="token or app")


class GithubOidcRule(Out):
    """A repository and ref whose GitHub Actions jobs may get a token (docs/github.md)."""

    workspace: str
    repository: str = Field(description="OWNER/NAME, lowercase")
    ref: str = Field(description="a full ref; `*` matches within one segment")
    role: str = Field(description="of the tokens given out: deploy or read")
    created_at: str


class WorkspaceInfo(WorkspaceSettings):
    jobs: int = Field(description="active jobs")
    active_runs: int
    head_sha: str | None
    github: GithubLinkInfo | None = Field(description="null: not linked to GitHub")
    github_oidc: list[GithubOidcRule] = Field(
        description="GitHub repositories and refs whose Actions jobs may get a token"
    )
    dlthub_id: str = Field(
        description="the workspace's id for the `dlthub` CLI (RUNTIME__WORKSPACE_ID)"
    )


# tokens ----------------------------------------------------------------------------------
class Token(Out):
    id: int
    name: str
    prefix: str = Field(description="the token's first characters, to recognise it")
    role: str
    workspace: str | None = Field(default=None, description="null: every workspace")
    created_at: str
    revoked_at: str | None
    expires_at: str | None = Field(default=None, description="null: never expires")


class Lease(Out):
    name: str = Field(description="the work: reconcile-sweep, retention, github-sweep")
    holder: str | None = Field(
        description="<hostname>:<pid>:<hex> of the server process; null: released"
    )
    epoch: int = Field(description="grows by one with every new holder (fences stale writes)")
    acquired_at: str
    expires_at: str = Field(description="renewed every DOCKYARD_LEASE_RENEW seconds by its holder")
    held: bool = Field(description="held and not expired, by this server's clock")
    this_server: bool = Field(description="held by the server process that answers")


class TokenCreated(Token):
    token: str = Field(description="the clear token, shown in this answer only")


# GitHub Actions OIDC ------------------------------------------------------------------------
class GithubOidcDiscovery(Out):
    issuer: str
    audience: str = Field(description="the `aud` a job must request its token with")
    token_lifetime_s: Number


# runs ------------------------------------------------------------------------------------
class Run(Out):
    run_id: str
    number: int
    job_ref: str
    status: str
    trigger: str
    reason: str | None = Field(
        description="why it ended so or was skipped; a failed run's is the exception it "
        "raised (`Type: message (file:line)`), else its exit code or signal"
    )
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    signal: int | None
    profile: str | None
    deployment_version: str | None
    configuration_version: str | None
    interval_start: str | None
    interval_end: str | None
    refresh: bool
    result: dict[str, Any] | None
    timeout_s: Number | None
    grace_s: Number | None
    scheduled_for: str | None
    skip_reason: str | None
    cause_run_id: str | None = Field(description="a follow-up's upstream run")
    rerun_of: str | None = Field(default=None, description="a re-run's original run")
    environment: str | None = Field(description="hash of the run's environment (requirements)")
    executor: str | None
    triggered_by: str | None = Field(
        default=None,
        description="who or what made the run: a token (`NAME (token #ID)`), `scheduler`,"
        " `follow-up of JOB #N`, `app request [by …]`; null for runs made before it was kept",
    )
    manual: bool = Field(
        default=False,
        description="a person launched it (API, CLI, dashboard); `trigger` is then the one"
        " dlt's launcher got: the job's default trigger, so a scheduled job keeps its interval",
    )
    cancelled_by: str | None = Field(
        default=None, description="who stopped it: a token, or `idle`, `timeout`, `server`"
    )
    holder: str | None = Field(
        default=None,
        description="the node (controller or worker) that claimed it; null before a claim",
    )
    pool: str = Field(
        default="default", description="the pool of the nodes that may take it (placement)"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="the labels a node must have to take it (placement)"
    )


class PipelineSummary(Out):
    """One pipeline run reported by dlt's trace."""

    pipeline: str | None
    destination: str | None
    dataset: str | None
    tables: dict[str, int] = Field(description="rows loaded per table")
    failed_steps: list[str]
    finished_at: Any


class RunRef(Out):
    """Another run, as a run's links name it."""

    run_id: str
    job_ref: str
    number: int
    status: str


class RunLinks(Out):
    """Cause and effect, both ways (lists newest first, at most 20)."""

    cause: RunRef | None = Field(description="the upstream run this follow-up reacts to")
    follow_ups: list[RunRef] = Field(description="the follow-up runs this run's end started")
    rerun_of: RunRef | None = Field(description="the run this one runs again")
    reruns: list[RunRef] = Field(description="the re-runs of this run")


class RunDetails(Run):
    pipelines: list[PipelineSummary]
    waiting: str | None = Field(
        default=None,
        description="why a pending batch run waits: no live node may take it (placement:"
        " what it needs and who is there; it ends failed after DOCKYARD_PLACEMENT_WAIT_S), or"
        " 'waiting for a run slot: N of N in use' (it starts in its turn)",
    )
    entry_point: dict[str, Any] | None
    traceback: str | None = Field(
        default=None,
        description="a failed run: the end of the traceback its `reason` was read from "
        "(at most 30 lines, 8 KiB)",
    )
    links: RunLinks


class LogPage(Out):
    """One bounded page of a run's log; go on from `next_offset` while `more`."""

    run_id: str
    status: str
    lines: list[dict[str, Any]]
    offset: int
    next_offset: int
    size: int
    more: bool
    line_count: int | None = Field(description="complete lines in the whole log, if asked")
    done: bool = Field(description="the run has ended: no more lines will come")


class Triggered(Out):
    """One matched job of a trigger: the run made (or skipped), or what a dry run would do."""

    job_ref: str
    trigger: str = Field(description="the trigger the run fires with")
    matched_trigger: str = Field(
        description="the trigger the selectors matched (a `manual:` one fires as the job's"
        " default trigger)"
    )
    run_id: str | None
    status: str = Field(description="triggered | skipped | would_trigger")
    number: int | None = None
    skip_reason: str | None = None
    run: Run | None = None


class TriggerResult(Out):
    triggered: list[Triggered]
    dry_run: bool


class CancelledRun(Out):
    run_id: str
    job_ref: str
    number: int
    status: str


class CancelJobsResult(Out):
    cancelled: list[CancelledRun]
    not_running: list[str] = Field(description="matched jobs with no active run")


class CancelRunResult(Out):
    run_id: str
    status: str


# jobs ------------------------------------------------------------------------------------
class Job(Out):
    job_ref: str
    name: str
    display_name: str | None = Field(description="`expose.display_name` of its definition")
    job_type: str
    triggers: list[str]
    triggers_humanized: list[str]
    default_trigger: str | None
    tags: list[str]
    description: str | None
    status: str
    created_sha: str
    updated_sha: str
    last_run: Run | None
    paused_at: str | None = Field(description="its timed triggers are paused since then")
    paused_by: str | None = Field(description="the name of the token that paused them")
    next_fire_at: str | None = Field(
        description="the earliest next tick of its timed triggers; null when paused, archived"
        " or it has none"
    )


class Schedule(Out):
    trigger: str
    timezone: str
    next_fire_at: str | None
    last_tick: str | None


class Freshness(Out):
    constraints: list[Any]
    fresh: bool
    reason: str | None


class Interval(Out):
    start: str
    end: str | None
    completed_up_to: str | None
    next_window: list[str] | None
    next_window_skip_reason: str | None


class JobPlacement(Out):
    """Where its runs go (`DOCKYARD_PLACEMENT`, docs/scaling.md)."""

    pool: str
    labels: dict[str, str]
    unmapped: list[str] = Field(description="requirements the placement file has no rule for")
    error: str | None = Field(default=None, description="why no run of it can be placed")


class JobInfo(Job):
    definition: dict[str, Any]
    placement: JobPlacement
    run_count: int
    timezone: str
    next_runs: list[str]
    next_runs_local: list[str]
    schedules: list[Schedule]
    freshness: Freshness
    interval: Interval | None
    refresh_pending: bool
    concurrency: int | None


class ScheduleChange(Out):
    """What a deploy would do to one job's schedule (nothing is written)."""

    job_ref: str
    old_triggers: list[str]
    new_triggers: list[str]
    timezone: str
    next_fire_at: dict[str, str | None]
    next_window: list[str] | None
    next_window_skip_reason: str | None = None


# deployments and configurations ----------------------------------------------------------
class Version(Out):
    version: str
    created_at: str
    message: str
    source_commit: str | None = Field(
        None, description="OWNER/NAME@SHA of a commit deployed from a git host (its trailer)"
    )


class Plan(Out):
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    archived: list[str]


class FieldChange(Out):
    field: str
    old: str = Field(description="compact JSON, at most 80 characters; `(none)` when unset")
    new: str


class Deployment(Version):
    previous_version: str | None
    plan: Plan
    field_changes: dict[str, list[FieldChange]] = Field(
        description="per updated job, its changed fields old → new (config fields by key"
        " names only)"
    )
    changed_files: list[str]
    jobs: list[str]
    description: str | None


class RollbackResult(Out):
    """A rollback: a new commit holding an earlier deployment's files, reconciled."""

    workspace: str
    status: str = Field(description="rolled_back, or unchanged (HEAD holds it already)")
    target: str = Field(description="the deployment rolled back to")
    previous: str = Field(description="the workspace's HEAD before")
    commit: str | None = Field(description="the rollback commit (None when unchanged)")
    plan: Plan
    summary: str
    undone: list[str] = Field(description="commits on main whose changes it undoes")
    resealed: list[str] = Field(description="secret files sealed again for the current key")
    note: str | None
    deployment_version: str | None
    configuration_version: str | None


class Reconciliation(Plan):
    """A version the server applied: its plan against what was deployed before."""

    sha: str
    summary: str
    deployment_version: str | None
    configuration_version: str | None


class Reconciled(Reconciliation):
    changed: bool = Field(description="false: the version was applied already")


class AppliedReconciliation(Reconciliation):
    applied_at: str


class ConfigFile(Out):
    name: str
    profile: str | None
    secret: bool
    keys: list[str] = Field(description="key names only, never values")


class Configuration(Version):
    files: list[ConfigFile]
    profiles: list[str]
    compared_with: str | None
    changes: dict[str, list[str]] = Field(description="key names added, removed, changed")


# keys ------------------------------------------------------------------------------------
class Key(Out):
    workspace: str
    public_key: str = Field(description="age public key the CLI encrypts secrets for")
    key_id: str
    retired_key_ids: list[str]
    fingerprint_key: str | None = Field(
        default=None, description="only for purpose=deploy (deploy role)"
    )


class KeyRotation(Out):
    workspace: str
    key_id: str
    retired_key_id: str
    commit: str | None = Field(description="the commit re-encrypting the secrets, if any")


# apps ------------------------------------------------------------------------------------
class App(Out):
    job_ref: str
    name: str
    status: str
    reason: str | None
    run_id: str | None
    number: int | None
    url: str | None
    url_problem: str | None = Field(description="why the app has no URL, if it has none")


class AppListed(App):
    interface: Any
    category: Any
    public_links: int


class AppServed(App):
    run: Run | None
    mcp_url: str | None = Field(
        None, description="an MCP server's endpoint (the URL + `mcp`); null for other apps"
    )


class Link(Out):
    id: int
    job_ref: str
    prefix: str
    note: str | None
    created_at: str | None
    revoked_at: str | None
    active: bool


class LinkCreated(Link):
    token: str = Field(description="the clear link token, shown in this answer only")
    path: str
    url: str


class LinksRevoked(Out):
    revoked: list[Link]
    closed_connections: int


# alerts ----------------------------------------------------------------------------------
class AlertChannel(Out):
    """A workspace's alert channel (docs/alerts.md); never a secret's value."""

    workspace: str
    name: str
    kind: str = Field(description="webhook, slack or email")
    events: list[str] = Field(description="of failed, timeout, lost, recovered")
    target: str = Field(description="where it sends, in words that hold no secret")
    config: dict[str, Any] = Field(
        description="what may be shown: a webhook's url; SMTP host, port, security, username,"
        " sender, to"
    )
    secret: str | None = Field(
        description="what is shown of its secret: a webhook secret's start, or `set`"
    )
    created_at: str


class AlertChannelCreated(AlertChannel):
    """The channel; for a webhook whose secret the server generated, that secret, this once."""

    webhook_secret: str | None = Field(
        default=None, description="the generated signing secret, shown in this answer only"
    )


class AlertChannelRemoved(AlertChannel):
    removed: bool


class AlertDelivery(Out):
    """One alert to one channel, with every attempt counted (docs/alerts.md)."""

    id: int
    channel: str
    event: str = Field(description="failed, timeout, lost, recovered, or test")
    run_id: str | None
    job: str | None
    run_number: int | None
    status: str = Field(description="pending, sent or failed (no attempt left)")
    attempts: int
    last_error: str | None = Field(description="the last failed attempt's error, one line")
    created_at: str
    next_attempt_at: str | None
    sent_at: str | None


class AuditActor(Out):
    kind: str = Field(description="token, scheduler, github, server, …")
    id: int | None = Field(description="the token's id (kept after it is revoked)")
    name: str


class AuditEvent(Out):
    id: int
    at: str | None
    actor: AuditActor
    actor_label: str
    workspace: str | None
    action: str = Field(
        description="deploy, launch, cancel, pause, resume, token.create, token.revoke,"
        " key.rotate, workspace.create, github.link, github.unlink"
    )
    target: str | None
    detail: dict[str, Any]


class AuditPage(Out):
    events: list[AuditEvent]
    next_before: int | None = Field(description="pass as `before` for the next (older) page")


class Worker(Out):
    """A node that holds runs: a controller (`dockyard server`) or a worker (docs/api.md)."""

    name: str
    kind: str = Field(description="controller or worker")
    pool: str | None
    labels: dict[str, str]
    slots: int | None = Field(description="how many runs it takes at once (null: no limit)")
    slots_in_use: int = Field(description="runs it holds in starting or running")
    started_at: str
    last_heartbeat_at: str
    state: str = Field(description="alive, lost (3 heartbeats missed) or stopped")
