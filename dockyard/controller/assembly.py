"""`Controller`: every part of the control plane, made once from settings and wired —
store, keys, git repositories, the lifecycle and its events, the runner, scheduler,
prewarmer, app monitor, reconciler, sweep and retention loops, and the executors. The web
layer and the CLI get the control plane from here; nothing else constructs these parts.
"""

import sys

from dockyard.clock import Clock, SystemClock
from dockyard.controller import (
    apps,
    auth,
    beacon,
    envs,
    github_credentials,
    github_oidc,
    keys,
    retention,
    workspaces,
)
from dockyard.controller.executors import sandbox
from dockyard.controller.executors.base import Executor
from dockyard.controller.executors.fleet import Fleet
from dockyard.controller.executors.local import LocalExecutor
from dockyard.controller.lifecycle import Events, Lifecycle
from dockyard.controller.loop import Loop
from dockyard.controller.prepare import Preparer
from dockyard.controller.prewarm import Prewarmer
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.runner import Runner
from dockyard.controller.runtime_config import Defaults
from dockyard.controller.scheduling.loop import Scheduler
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Workspace
from dockyard.settings import Settings


class Controller:
    def __init__(
        self, settings: Settings, clock: Clock | None = None, executor: Executor | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        for path in (settings.data_dir, settings.repos_dir, settings.runs_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.data_dir.chmod(0o700)  # keys, database, repositories: the server's only
        self.isolation = sandbox.probe(settings.sandbox, settings.sandbox_uid_base)
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.beacon_secret = beacon.load_secret(settings.data_dir / "beacon.key")
        self.keys = keys.Keyring(keys.load_master(settings.data_dir), settings.repos_dir)
        self.hooks = workspaces.HookInstaller(
            sys.executable, settings.max_workspace_bytes, settings.push_limit
        )
        self.defaults = Defaults(
            settings.default_timeout_s, settings.default_grace_s, settings.app_idle_s
        )
        self.executor = make_fleet(settings, executor, self.isolation, self.clock)
        self.preparer = Preparer(settings, self.executor, self.beacon_secret, self.keys, self.db)
        # what happened to runs and deployments; each loop subscribes to what wakes it
        self.events = Events()
        self.lifecycle = Lifecycle(
            settings.repos_dir, self.defaults, settings.executor, self.events
        )
        self.runner = Runner(
            self.db,
            self.clock,
            self.executor,
            self.preparer,
            self.lifecycle,
            bounds=(settings.pending_timeout_s, settings.starting_timeout_s),
        )
        self.prewarmer = Prewarmer(
            self.db,
            self.preparer,
            self.executor,
            self.lifecycle,
            settings.prewarm_s,
            settings.prewarm_max,
        )
        self.scheduler = Scheduler(
            self.db, self.clock, self.lifecycle, self.prewarmer, self.runner.release_prepared
        )
        self.apps = apps.Apps(self.db, self.clock, self.lifecycle, settings.app_idle_s)
        # the GitHub Actions OIDC issuer's keys (fetched on the first exchange, then cached)
        self.github_jwks = github_oidc.Jwks(
            settings.github_oidc_issuer, settings.github_oidc_jwks_ttl_s, self.clock
        )
        # what a GitHub link's calls authenticate with (App installation tokens cached here)
        self.github_credentials = github_credentials.Credentials(self.db, self.keys, self.clock)
        self.reconciler = Reconciler(self.db, settings.repos_dir, self.events, self.clock)
        self.sweeper = Sweeper(self.reconciler, settings.sweep_interval_s)
        self.retention = retention.Retention(
            self.db,
            self.clock,
            self.preparer,
            self._local_envs,
            retention.Windows(
                settings.retain_runs_days,
                settings.retain_checkouts_days,
                settings.retain_envs_days,
            ),
            settings.retention_interval_s,
        )

    def _local_envs(self) -> envs.EnvBuilder | None:
        """The local executor's virtualenvs (what retention may prune)."""
        builder = getattr(self.executor.get("local"), "builder", None)
        return builder if isinstance(builder, envs.EnvBuilder) else None

    def executor_of(self, ws: Workspace) -> str:
        """The executor a workspace's runs go to: its own choice, else the server's."""
        return ws.executor or self.executor.default

    def bootstrap(self) -> str | None:
        """Admin token and repository hooks; returns a newly generated admin token."""
        with self.db.session() as session:
            generated = auth.ensure_admin(session, self.settings.admin_token)
            names = []
            for ws in workspaces.list_all(session):
                names.append(ws.name)
                self.keys.ensure(session, ws)  # workspaces made before keys existed
                self.keys.publish(session, ws)  # the key ids the receive hook accepts
        for name in names:
            path = workspaces.repo_path(self.settings.repos_dir, name)
            if path.exists():
                import pygit2

                self.hooks(pygit2.Repository(str(path)))
        return generated

    def start(self) -> None:
        self.prewarmer.recover()
        self.runner.start()
        self.scheduler.start()
        self.sweeper.start()
        self.apps.monitor.start()
        self.retention.start()

    def stop(self) -> None:
        self.retention.stop()
        self.apps.monitor.stop()
        self.sweeper.stop()
        self.scheduler.stop()
        self.runner.stop()
        self.db.dispose()


def make_fleet(
    settings: Settings,
    local: Executor | None = None,
    isolation: sandbox.Isolation | None = None,
    clock: Clock | None = None,
) -> Fleet:
    """The executors runs can use: the server's default (`--executor`) and, per workspace,
    the other; each is made on first use."""

    def docker() -> Executor:
        from dockyard.controller.executors.docker import DockerExecutor

        return DockerExecutor.from_settings(settings, clock)

    def local_executor() -> Executor:
        return local or LocalExecutor(
            settings.envs_dir, settings.base_url, settings.data_dir / "pycache", isolation
        )

    return Fleet(settings.executor, {"local": local_executor, "docker": docker})


class Sweeper(Loop):
    """Reconciles every workspace whose HEAD moved without a push event reaching us."""

    name = "sweep"

    def __init__(self, reconciler: Reconciler, interval_s: float) -> None:
        super().__init__()
        self.reconciler = reconciler
        self.interval_s = interval_s

    def step(self) -> float:
        self.reconciler.sweep()
        return self.interval_s
