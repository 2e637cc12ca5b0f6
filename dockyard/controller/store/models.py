"""Tables. Schema changes go through Alembic migrations only (`store/migrations`)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Clipped(TypeDecorator[str]):
    """A descriptive VARCHAR(n) (who triggered, paused or cancelled, an audit target) that
    keeps its first n characters. SQLite stores any length; PostgreSQL refuses a longer value,
    and a follow-up named after a long job must not fail the run that ended on that account."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        limit = getattr(self.impl_instance, "length", None)
        if value is None or limit is None or len(value) <= limit:
            return value
        return value[: limit - 1] + "…"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Workspace(Base):
    __tablename__ = "workspace"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    reconciled_sha: Mapped[str | None] = mapped_column(String(40))
    reconciled_at: Mapped[datetime | None]
    deployment_version: Mapped[str | None] = mapped_column(String(40))
    configuration_version: Mapped[str | None] = mapped_column(String(40))
    reconcile_error: Mapped[str | None] = mapped_column(Text)
    executor: Mapped[str | None] = mapped_column(String(16))  # None: the server's default


class WorkspaceKey(Base):
    """A workspace's age key pair; the private half sealed to the server's master key.
    Retired keys are kept: runs of older configuration versions still decrypt with them."""

    __tablename__ = "workspace_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"), index=True)
    kid: Mapped[str] = mapped_column(String(16), unique=True)
    public_key: Mapped[str] = mapped_column(String(128))
    sealed_identity: Mapped[str] = mapped_column(Text)  # base64 age ciphertext
    sealed_fp_key: Mapped[str] = mapped_column(Text)  # base64 age ciphertext
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class Token(Base):
    __tablename__ = "token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.id"))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    # "env": DOCKYARD_ADMIN_TOKEN (revoked when the server starts with another);
    # "github-oidc": exchanged for a GitHub Actions job's OIDC token; None: made through the
    # API, the dashboard or at first start
    source: Mapped[str | None] = mapped_column(String(16))
    # refused by `auth.authenticate` from then on; None: never expires
    expires_at: Mapped[datetime | None]


class GithubOidcRule(Base):
    """A GitHub repository and ref whose Actions jobs may exchange their OIDC token for a
    short-lived token on one workspace (`workspace allow-github-oidc`)."""

    __tablename__ = "github_oidc_rule"
    __table_args__ = (UniqueConstraint("workspace_id", "repository", "ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"), index=True)
    repository: Mapped[str] = mapped_column(String(140))  # OWNER/NAME, lowercase
    ref: Mapped[str] = mapped_column(String(255))  # refs/heads/main; `*` within one segment
    role: Mapped[str] = mapped_column(String(16))  # of the tokens given out: deploy or read
    created_at: Mapped[datetime]


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (UniqueConstraint("workspace_id", "job_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"), index=True)
    job_ref: Mapped[str] = mapped_column(String(255))
    job_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any]]
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_sha: Mapped[str] = mapped_column(String(40))
    updated_sha: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]
    runs_created: Mapped[int] = mapped_column(Integer, default=0)
    # refresh: the next run gets refresh=True and its interval reset; freshness that the
    # job's completed runs gave downstream jobs counts only from reset_at on
    refresh_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reset_at: Mapped[datetime | None]
    interval_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # a person paused the job's timed triggers (the dashboard); code still declares them
    paused_at: Mapped[datetime | None]
    paused_by: Mapped[str | None] = mapped_column(Clipped(128))


class Reconciliation(Base):
    __tablename__ = "reconciliation"
    __table_args__ = (UniqueConstraint("workspace_id", "sha"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"))
    sha: Mapped[str] = mapped_column(String(40))
    previous_sha: Mapped[str | None] = mapped_column(String(40))
    applied_at: Mapped[datetime]
    result: Mapped[dict[str, Any]]
    deployment_version: Mapped[str | None] = mapped_column(String(40))
    configuration_version: Mapped[str | None] = mapped_column(String(40))


class Run(Base):
    __tablename__ = "run"
    __table_args__ = (
        UniqueConstraint("job_id", "number"),
        # exactly one run per timed tick and one follow-up per upstream run (NULLs are distinct)
        UniqueConstraint("job_id", "trigger", "scheduled_for", name="uq_run_tick"),
        UniqueConstraint("job_id", "trigger", "cause_run_id", name="uq_run_cause"),
        Index("ix_run_status", "status"),
        Index("ix_run_job_created", "job_id", "created_at"),
        # the dashboard's run lists: newest first, keyset pages on (created_at, id)
        Index("ix_run_ws_created", "workspace_id", "created_at", "id"),
        Index("ix_run_ws_status_created", "workspace_id", "status", "created_at", "id"),
        # a run's page links cause and effect both ways: its follow-ups and its re-runs
        Index("ix_run_cause_run_id", "cause_run_id"),
        Index("ix_run_rerun_of", "rerun_of"),
        # a node's runs (the runner watches its own; a lost node's are ended)
        Index("ix_run_holder_status", "holder", "status"),
        # claims: the pending runs of one pool (controller/placement.py)
        Index("ix_run_status_pool", "status", "pool"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"))
    number: Mapped[int]
    trigger: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # the end of the traceback a failed run ended with (controller/failure.py: ≤ 30 lines,
    # 8 KiB); kept when retention empties the run's folder; loaded only when asked for
    traceback: Mapped[str | None] = mapped_column(Text, deferred=True)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    signal: Mapped[int | None]
    profile: Mapped[str | None] = mapped_column(String(64))
    deployment_version: Mapped[str | None] = mapped_column(String(40))
    configuration_version: Mapped[str | None] = mapped_column(String(40))
    interval_start: Mapped[datetime | None]
    interval_end: Mapped[datetime | None]
    refresh: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_s: Mapped[float] = mapped_column(Float)
    grace_s: Mapped[float] = mapped_column(Float)
    deadline_at: Mapped[datetime | None]
    stop_requested_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    entry_point: Mapped[dict[str, Any] | None]
    env_hash: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None]
    scheduled_for: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    cause_run_id: Mapped[str | None] = mapped_column(String(36))
    executor: Mapped[str | None] = mapped_column(String(16))
    # a re-run (`job-run NAME N rerun`, the run page's button): the run it runs again
    rerun_of: Mapped[str | None] = mapped_column(String(36))
    # who or what made it (`audit.Actor.label`: a token, `scheduler`, `follow-up of …`), and
    # whether a person launched it: `trigger` stays the one dlt's launcher gets (a manual
    # launch of a scheduled job fires its schedule's trigger, so its interval math holds)
    triggered_by: Mapped[str | None] = mapped_column(Clipped(255))
    manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # who stopped it: a token's label, or `idle`, `timeout`, `server`
    cancelled_by: Mapped[str | None] = mapped_column(Clipped(255))
    # the node (controller or worker, `Node.name`) that claimed it, and how many claims it has
    # had: the holder's later writes are guarded by both, so a holder given up on cannot
    # finish or restart it (controller/nodes.py)
    holder: Mapped[str | None] = mapped_column(String(64))
    claim_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # where it may run, from its job's `require` and the placement file at its creation: a
    # node takes it iff the node's pool is this and its labels include these
    pool: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Node(Base):
    """A process that holds runs: a controller (`dockyard server`) or a worker. It
    heartbeats; one whose heartbeat is older than `nodes.LOST_AFTER` is lost and the runs it
    held end `failed` (controller/nodes.py). `incarnation` grows at every start: a heartbeat
    from an older incarnation of the same name is refused."""

    __tablename__ = "node"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # controller | worker
    pool: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    slots: Mapped[int | None]  # None: no limit (a controller's embedded executor)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    incarnation: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16))  # up | stopped (lost is computed)
    started_at: Mapped[datetime]
    last_heartbeat_at: Mapped[datetime]
    # a worker's: the worker token that registered it; only that token acts for it (another
    # may take the name once this one is revoked or expired). None: a controller.
    token_id: Mapped[int | None]


class Schedule(Base):
    """One timed trigger of one job: when it fires next. Kept by job (job_ref), so a redeploy
    that keeps the trigger keeps its state; a changed trigger is a new row."""

    __tablename__ = "schedule"
    __table_args__ = (
        UniqueConstraint("job_id", "trigger"),
        Index("ix_schedule_next_fire_at", "next_fire_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"))
    trigger: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    next_fire_at: Mapped[datetime | None]
    last_tick: Mapped[datetime | None]
    created_at: Mapped[datetime]


class IntervalWindow(Base):
    """The interval ledger: windows of an interval job that are running or done. A window
    that failed is removed, so it is folded into the next one; the unique start makes every
    window run at most once. A refresh starts a new epoch (back at `interval.start`) and
    keeps the old epochs' windows as history."""

    __tablename__ = "interval_window"
    __table_args__ = (UniqueConstraint("job_id", "epoch", "start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"), index=True)
    epoch: Mapped[int]
    start: Mapped[datetime]
    end: Mapped[datetime]
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id"))
    status: Mapped[str] = mapped_column(String(16))


class BeaconPayload(Base):
    __tablename__ = "beacon_payload"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("run.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]
    body: Mapped[dict[str, Any]]
    size: Mapped[int] = mapped_column(Integer, server_default="0")  # bytes as received


class PublicLink(Base):
    """A revocable link that serves one app without login (`/p/<token>/`). Only the SHA-256
    of the token is kept; the clear token is shown once, when the link is made."""

    __tablename__ = "public_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"))
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("token.id"))
    revoked_at: Mapped[datetime | None]


class GithubApp(Base):
    """A GitHub App dockyard acts as (docs/github.md, "Linking with a GitHub App"), stored
    once per App id and API and shared by every link made with it. The private key and the
    webhook secret are sealed to the server's master key. An App has one webhook for all its
    installations: `hook_id` is the opaque last part of its URL (`/webhooks/github/app/<id>`)."""

    __tablename__ = "github_app"
    __table_args__ = (UniqueConstraint("app_id", "api_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(BigInteger)
    api_url: Mapped[str] = mapped_column(String(255))
    hook_id: Mapped[str] = mapped_column(String(64), unique=True)
    sealed_private_key: Mapped[str] = mapped_column(Text)  # base64 age ciphertext
    sealed_secret: Mapped[str] = mapped_column(Text)  # base64 age ciphertext
    created_at: Mapped[datetime]


class GithubLink(Base):
    """A workspace linked to a GitHub repository (docs/github.md). The credential and the
    webhook secret are sealed to the server's master key (`keys.Keyring.seal`); the clear
    secret is shown once, when the link is made. `hook_id` is the opaque last part of the
    link's webhook URL, so a delivery finds its link before any byte of its body is read."""

    __tablename__ = "github_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"), unique=True)
    hook_id: Mapped[str] = mapped_column(String(64), unique=True)
    repo: Mapped[str] = mapped_column(String(140))  # OWNER/NAME
    branch: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(255))  # "" is the repository's root
    api_url: Mapped[str] = mapped_column(String(255))
    credential_kind: Mapped[str] = mapped_column(String(16))  # "token" | "app"
    # the token (token mode); None for an App link, whose tokens are minted on demand
    sealed_credential: Mapped[str | None] = mapped_column(Text)  # base64 age ciphertext
    sealed_secret: Mapped[str] = mapped_column(Text)  # base64 age ciphertext
    created_at: Mapped[datetime]
    last_processed_head: Mapped[str | None] = mapped_column(String(40))
    last_processed_at: Mapped[datetime | None]
    # the webhook's id on GitHub when dockyard created it (unlink deletes it); None: by hand
    github_hook_id: Mapped[int | None] = mapped_column(BigInteger)
    # App mode: the App and the installation that covers the repository
    app_ref: Mapped[int | None] = mapped_column(ForeignKey("github_app.id"), index=True)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)


class GithubDelivery(Base):
    """One webhook delivery, stored before it is answered (webhooks/deliveries.py).
    Unique per workspace and `X-GitHub-Delivery`: a redelivery is recognised, never redone.
    `link_id` is kept without a foreign key so that the history outlives an unlink."""

    __tablename__ = "github_delivery"
    __table_args__ = (
        UniqueConstraint("workspace_id", "delivery_id"),
        Index("ix_github_delivery_status", "status", "link_id"),
        Index("ix_github_delivery_ws_received", "workspace_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"))
    link_id: Mapped[int] = mapped_column(Integer)
    delivery_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # ping | deploy | plan | none
    repo: Mapped[str | None] = mapped_column(String(140))
    ref: Mapped[str | None] = mapped_column(String(255))
    head_sha: Mapped[str | None] = mapped_column(String(40))
    before_sha: Mapped[str | None] = mapped_column(String(40))
    after_sha: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # received|processing|done|ignored|failed
    outcome: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    processed_at: Mapped[datetime | None]


class AlertChannel(Base):
    """Where a workspace's alerts go (docs/alerts.md): a signed JSON webhook, a Slack
    incoming webhook or e-mail through SMTP. `config` holds what may be shown (the webhook's
    URL, the SMTP host, port, security, user, sender and recipients); `sealed_secret` what
    may not (the webhook's signing secret, the Slack URL, the SMTP password), sealed to the
    server's master key (`keys.Keyring.seal`); `secret_hint` is what is shown of it."""

    __tablename__ = "alert_channel"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # webhook | slack | email
    events: Mapped[list[str]] = mapped_column(JSON)  # failed, timeout, lost, recovered
    config: Mapped[dict[str, Any]]
    sealed_secret: Mapped[str | None] = mapped_column(Text)  # base64 age ciphertext
    secret_hint: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]


class AlertDelivery(Base):
    """One alert to one channel: the outbox row written in the transaction that ended the
    run (`alerts.outbox`), then sent, retried and recorded by `alerts.delivery.Sender`.
    `message` is what the alert says (workspace, job, run, status, reason), fixed when the
    run ended. The channel's id and name are kept without a foreign key, so the history
    outlives the channel."""

    __tablename__ = "alert_delivery"
    __table_args__ = (
        UniqueConstraint("channel_id", "run_id", "event"),
        Index("ix_alert_delivery_due", "status", "next_attempt_at"),
        Index("ix_alert_delivery_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id"))
    channel_id: Mapped[int] = mapped_column(Integer)
    channel_name: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(36))  # None: a test message
    event: Mapped[str] = mapped_column(String(16))  # failed|timeout|lost|recovered|test
    message: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class AuditEvent(Base):
    """One change a person or dockyard made (`controller/audit.py`): append-only, written in
    the transaction of the change; never updated or deleted by any code path, and kept by
    retention. `detail` is small, bounded JSON and never holds a secret."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_ws_id", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(String(16))  # token | scheduler | github | server
    actor_id: Mapped[int | None] = mapped_column(Integer)  # the token's id, kept past revoke
    actor_name: Mapped[str] = mapped_column(Clipped(128))
    # no foreign key: the history outlives what it names; None: server-wide (tokens)
    workspace_id: Mapped[int | None] = mapped_column(Integer)
    workspace: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(Clipped(255))
    detail: Mapped[dict[str, Any] | None]


class Lease(Base):
    """A named lease (`controller/leases.py`): the work that must happen once across several
    controllers (the reconcile sweep, retention, the GitHub sweeper) runs only in the process
    that holds it. `epoch` grows by one with every new holder and never goes back, so a write
    fenced by (holder, epoch) is refused once anyone else has taken the lease. `holder` is
    None after a clean release (the next taker needs no wait)."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    epoch: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
