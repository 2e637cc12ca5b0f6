"""Server settings, built once at start-up and passed down (never a module-level global)."""

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8765
DEFAULT_TIMEOUT_S = 120 * 60.0
DEFAULT_GRACE_S = 30.0
DEFAULT_MAX_WORKSPACE_BYTES = 50 * 1024 * 1024
DEFAULT_APP_IDLE_S = 5 * 60.0
KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(".dockyard"))
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str | None = None
    admin_token: str | None = None
    max_workspace_bytes: int = DEFAULT_MAX_WORKSPACE_BYTES
    # what one push may add (its HTTP body, and its new objects uncompressed); None: 4 times
    # max_workspace_bytes (a first deploy plus a few versions of history)
    max_push_bytes: int | None = None
    sweep_interval_s: float = 5.0
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    default_grace_s: float = DEFAULT_GRACE_S
    pending_timeout_s: float = 600.0
    starting_timeout_s: float = 1800.0
    executor: str = "local"
    docker_base_image: str = "python:{python}-slim"
    docker_network: str = "bridge"
    docker_ca_bundle: str | None = None
    docker_keep_images: int = 5
    prewarm_s: float = 5.0
    prewarm_max: int = 4
    # the warm pool (controller/warmpool.py): memory for held processes in MB (None: sized to
    # the machine, `warmpool.default_mb`; 0: off) and how long one waits unused
    warm_pool_mb: int | None = None
    warm_idle_s: float = 600.0
    # an app (interactive job) without proxied traffic or an open connection for this long is
    # stopped, unless its job declares its own `idle_timeout` (docs/apps.md)
    app_idle_s: float = DEFAULT_APP_IDLE_S
    # request bodies, per kind of endpoint: a declared length over the cap is refused (413)
    # before any byte is read, a streamed body as soon as it passes the cap (web/limits.py)
    max_form_bytes: int = 64 * KIB  # the login form and the dashboard's forms
    max_api_bytes: int = 1 * MIB  # the JSON API
    max_git_bytes: int = 512 * MIB  # git pushes (a backstop: web/git_http.py has its own)
    max_app_bytes: int = 256 * MIB  # requests proxied to apps (uploads)
    max_other_bytes: int = 64 * KIB  # everything else
    # GitHub webhook deliveries: GitHub caps a payload at 25 MB and never redelivers one we
    # refuse, so the default takes any delivery GitHub sends; an unknown webhook URL (404)
    # or a missing signature (401) is answered before a byte of the body is read
    max_webhook_bytes: int = 25 * MIB
    # the beacon (controller/beacon.py): one payload, payloads per run and kind, bytes per run
    beacon_max_bytes: int = 8 * MIB
    beacon_max_payloads: int = 1000
    beacon_max_run_bytes: int = 64 * MIB
    # retention (controller/retention.py), in days; 0 keeps forever
    retain_runs_days: float = 30.0  # logs and folders of runs that ended this long ago
    retain_checkouts_days: float = 7.0  # checkouts of deployments nothing uses any more
    retain_envs_days: float = 14.0  # environments nothing uses any more
    retention_interval_s: float = 3600.0
    # jobs on the local executor: a bubblewrap sandbox ("auto": when it works, "bwrap":
    # required, "off"), as uid sandbox_uid_base + workspace id when the server is root;
    # without a sandbox, workspace-limited tokens may deploy only if this says "allow"
    sandbox: str = "auto"
    sandbox_uid_base: int = 1_800_000_000
    unisolated_deploys: str = "refuse"
    # apps are served on origins of their own, `<app>--<ws>.<apps_domain>` (docs/apps.md);
    # None: `apps.localhost` on the server's port
    apps_domain: str | None = None
    # addresses (or networks) of reverse proxies whose X-Forwarded-For/-Proto/-Host are
    # believed; nobody's by default (docs/security.md)
    trusted_proxies: tuple[str, ...] = ()
    # GitHub Actions OIDC (controller/github_oidc.py, docs/github.md): the issuer whose
    # signed job tokens are exchanged for short-lived deploy tokens, the audience they must
    # name (None: base_url), the lifetime of the tokens given out and of the cached JWKS
    github_oidc_issuer: str = "https://token.actions.githubusercontent.com"
    github_oidc_audience: str | None = None
    github_oidc_token_s: float = 15 * 60.0
    github_oidc_jwks_ttl_s: float = 3600.0
    # the GitHub sweeper (webhooks/sweeper.py): how often each linked branch's head is
    # compared with the last processed one, ±20 %; 0 turns it off
    github_sweep_s: float = 60.0
    # alerts (controller/alerts/, docs/alerts.md): the wait before each retry of a delivery
    # (the last one repeats), how many attempts in all, one attempt's timeout, and how many
    # channels one workspace may have
    alert_backoff_s: tuple[float, ...] = (30.0, 120.0, 600.0, 1800.0, 3600.0)
    alert_max_attempts: int = 6
    alert_timeout_s: float = 10.0
    alert_max_channels: int = 20
    # leases (controller/leases.py): the work that must happen once across several servers
    # on one database (reconcile sweep, retention, GitHub sweeper) runs in the holder of its
    # lease; a holder that stops renewing is replaced within lease_ttl_s + lease_renew_s
    lease_ttl_s: float = 10.0
    lease_renew_s: float = 3.0
    # this server's name as a node (controller/nodes.py): kept across restarts, so a restarted
    # server adopts the runs it held; two live servers on one database need different names
    node_name: str = field(default_factory=socket.gethostname)
    start_loops: bool = True
    # whether this server's own runner claims batch runs (off: only `dockyard worker` hosts
    # run them; interactive runs stay here either way)
    embedded_runs: bool = True
    # where runs go: a TOML file mapping dlt's `require` to pools and labels
    # (controller/placement.py); a pending run no live node can take fails after the wait
    placement: str | None = None
    placement_wait_s: float = 60.0
    # the API the stock `dlthub` CLI (dlthub-client) calls, under /dlthub (docs/dlthub-cli.md)
    dlthub_compat: bool = False
    # batch runs this server's runner runs at once (None: two per core, at most one per GiB
    # of memory), the slots of one run by instance size (`large=2,xlarge=4`), and the
    # niceness runs and environment builds get, so the scheduler and the API keep their share
    # of the CPU under a burst (controller/slots.py, docs/scheduling.md)
    run_slots: int | None = None
    slot_weights: str = ""
    run_nice: int = 10

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults < environment (`DOCKYARD_*`) < explicit overrides (CLI flags)."""
        env: dict[str, object] = {}
        for var, (name, convert) in ENVIRONMENT.items():
            if os.environ.get(var):
                env[name] = convert(os.environ[var])
        env.update({k: v for k, v in overrides.items() if v is not None})
        env["data_dir"] = Path(str(env.get("data_dir", ".dockyard"))).resolve()
        return cls(**env)  # type: ignore[arg-type]

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'dockyard.db'}"

    @property
    def base_url(self) -> str:
        """Where runs on this machine reach the server (beacon DSN)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def oidc_audience(self) -> str:
        """The `aud` a GitHub Actions OIDC token must carry to be exchanged here."""
        return self.github_oidc_audience or self.base_url

    @property
    def push_limit(self) -> int:
        return self.max_push_bytes or 4 * self.max_workspace_bytes

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def envs_dir(self) -> Path:
        return self.data_dir / "envs"

    @property
    def checkouts_dir(self) -> Path:
        return self.data_dir / "checkouts"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def var_dir(self) -> Path:
        """Pipeline working dirs and local destination files, kept across deployments."""
        return self.data_dir / "var"


def _split(value: str) -> tuple[str, ...]:
    """A comma-separated list (spaces allowed)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _on_off(value: str) -> bool:
    """`on` or `off` (also true/false, 1/0, yes/no)."""
    word = value.strip().lower()
    if word in ("on", "true", "1", "yes"):
        return True
    if word in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is neither on nor off")


def _seconds(value: str) -> tuple[float, ...]:
    """A comma-separated list of seconds (`30,120,600`)."""
    return tuple(float(part) for part in _split(value))


ENVIRONMENT: dict[str, tuple[str, Callable[[str], object]]] = {
    "DOCKYARD_DATA_DIR": ("data_dir", Path),
    "DOCKYARD_DB": ("db_url", str),
    "DOCKYARD_PORT": ("port", int),
    "DOCKYARD_PUBLIC_URL": ("public_url", str),
    "DOCKYARD_ADMIN_TOKEN": ("admin_token", str),
    "DOCKYARD_MAX_WORKSPACE_BYTES": ("max_workspace_bytes", int),
    "DOCKYARD_MAX_PUSH_BYTES": ("max_push_bytes", int),
    "DOCKYARD_SWEEP_INTERVAL": ("sweep_interval_s", float),
    "DOCKYARD_PENDING_TIMEOUT": ("pending_timeout_s", float),
    "DOCKYARD_STARTING_TIMEOUT": ("starting_timeout_s", float),
    "DOCKYARD_PREWARM_S": ("prewarm_s", float),
    "DOCKYARD_EXECUTOR": ("executor", str),
    "DOCKYARD_DOCKER_BASE_IMAGE": ("docker_base_image", str),
    "DOCKYARD_DOCKER_NETWORK": ("docker_network", str),
    "DOCKYARD_DOCKER_CA_BUNDLE": ("docker_ca_bundle", str),
    "DOCKYARD_DOCKER_KEEP_IMAGES": ("docker_keep_images", int),
    "DOCKYARD_PREWARM_MAX": ("prewarm_max", int),
    "DOCKYARD_WARM_POOL_MB": ("warm_pool_mb", int),
    "DOCKYARD_WARM_IDLE_S": ("warm_idle_s", float),
    "DOCKYARD_APP_IDLE_S": ("app_idle_s", float),
    "DOCKYARD_MAX_FORM_BYTES": ("max_form_bytes", int),
    "DOCKYARD_MAX_API_BYTES": ("max_api_bytes", int),
    "DOCKYARD_MAX_GIT_BYTES": ("max_git_bytes", int),
    "DOCKYARD_MAX_APP_BYTES": ("max_app_bytes", int),
    "DOCKYARD_MAX_OTHER_BYTES": ("max_other_bytes", int),
    "DOCKYARD_MAX_WEBHOOK_BYTES": ("max_webhook_bytes", int),
    "DOCKYARD_BEACON_MAX_BYTES": ("beacon_max_bytes", int),
    "DOCKYARD_BEACON_MAX_PAYLOADS": ("beacon_max_payloads", int),
    "DOCKYARD_BEACON_MAX_RUN_BYTES": ("beacon_max_run_bytes", int),
    "DOCKYARD_RETAIN_RUNS_DAYS": ("retain_runs_days", float),
    "DOCKYARD_RETAIN_CHECKOUTS_DAYS": ("retain_checkouts_days", float),
    "DOCKYARD_RETAIN_ENVS_DAYS": ("retain_envs_days", float),
    "DOCKYARD_RETENTION_INTERVAL": ("retention_interval_s", float),
    "DOCKYARD_SANDBOX": ("sandbox", str),
    "DOCKYARD_SANDBOX_UID_BASE": ("sandbox_uid_base", int),
    "DOCKYARD_UNISOLATED_DEPLOYS": ("unisolated_deploys", str),
    "DOCKYARD_APPS_DOMAIN": ("apps_domain", str),
    "DOCKYARD_TRUSTED_PROXIES": ("trusted_proxies", _split),
    "DOCKYARD_GITHUB_OIDC_ISSUER": ("github_oidc_issuer", str),
    "DOCKYARD_GITHUB_OIDC_AUDIENCE": ("github_oidc_audience", str),
    "DOCKYARD_GITHUB_OIDC_TOKEN_S": ("github_oidc_token_s", float),
    "DOCKYARD_GITHUB_OIDC_JWKS_TTL": ("github_oidc_jwks_ttl_s", float),
    "DOCKYARD_GITHUB_SWEEP_S": ("github_sweep_s", float),
    "DOCKYARD_ALERT_BACKOFF": ("alert_backoff_s", _seconds),
    "DOCKYARD_ALERT_MAX_ATTEMPTS": ("alert_max_attempts", int),
    "DOCKYARD_ALERT_TIMEOUT": ("alert_timeout_s", float),
    "DOCKYARD_ALERT_MAX_CHANNELS": ("alert_max_channels", int),
    "DOCKYARD_LEASE_TTL": ("lease_ttl_s", float),
    "DOCKYARD_LEASE_RENEW": ("lease_renew_s", float),
    "DOCKYARD_NODE_NAME": ("node_name", str),
    "DOCKYARD_EMBEDDED_RUNS": ("embedded_runs", _on_off),
    "DOCKYARD_PLACEMENT": ("placement", str),
    "DOCKYARD_PLACEMENT_WAIT_S": ("placement_wait_s", float),
    "DOCKYARD_DLTHUB_COMPAT": ("dlthub_compat", _on_off),
    "DOCKYARD_RUN_SLOTS": ("run_slots", int),
    "DOCKYARD_SLOT_WEIGHTS": ("slot_weights", str),
    "DOCKYARD_RUN_NICE": ("run_nice", int),
}
"""Server settings from the environment: variable -> (field, conversion)."""
