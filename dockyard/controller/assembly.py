"""`Controller`: every part of the control plane, made once from settings and wired —
store, keys, git repositories, the lifecycle and its events, the runner, scheduler,
prewarmer, app monitor, reconciler, sweep and retention loops, and the executors. The web
layer and the CLI get the control plane from here; nothing else constructs these parts.

The sweep and retention run under named leases (`leases.py`, kept by `self.leases`): with
several servers on one database only the holder does that work, its writes fenced by the
lease's epoch; a lone server takes its leases as it starts.
"""

import logging
import sys
from datetime import datetime
from pathlib import Path

from dockyard.clock import Clock, SystemClock
from dockyard.controller import (
    apps,
    auth,
    beacon,
    envs,
    github_credentials,
    github_oidc,
    keys,
    leases,
    nodes,
    notify,
    placement,
    retention,
    slots,
    unplaced,
    warmpool,
    workspaces,
)
from dockyard.controller.alerts import delivery as alert_delivery
from dockyard.controller.executors import sandbox
from dockyard.controller.executors.base import Executor
from dockyard.controller.executors.fleet import Fleet
from dockyard.controller.executors.local import LocalExecutor
from dockyard.controller.lifecycle import Events, Lifecycle, RunEnded
from dockyard.controller.loop import Loop
from dockyard.controller.prepare import Preparer
from dockyard.controller.prewarm import Prewarmer
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.runner import Runner
from dockyard.controller.runtime_config import Defaults
from dockyard.controller.scheduling.loop import Scheduler
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Workspace
from dockyard.controller.warmpool import WarmPool
from dockyard.controller.workerside import WorkerSide
from dockyard.errors import InvalidInput
from dockyard.settings import Settings

log = logging.getLogger(__name__)


class Controller:
    def __init__(
        self, settings: Settings, clock: Clock | None = None, executor: Executor | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._stopped = False
        for path in (settings.data_dir, settings.repos_dir, settings.runs_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.data_dir.chmod(0o700)  # keys, database, repositories: the server's only
        self.isolation = sandbox.probe(settings.sandbox, settings.sandbox_uid_base)
        self.db = Database(settings.database_url)
        self.db.migrate()
        # the work that must happen once across servers runs under these leases (holder:
        # this process, new at every start)
        self.holder = leases.holder_identity()
        self.leases = leases.Keeper(
            leases.Leases(self.db, self.clock, self.holder, settings.lease_ttl_s),
            settings.lease_renew_s,
        )
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
        # this server as a node: the holder of the runs it claims (controller/nodes.py)
        # on PostgreSQL heartbeats go by the database's clock (hosts' clocks may disagree);
        # a test's FakeClock stays the clock
        self.membership = nodes.Membership(
            self.db,
            self.clock,
            # a controller whose runner takes batch runs serves the default pool
            nodes.Identity(
                nodes.check_name(settings.node_name),
                pool=placement.DEFAULT_POOL if settings.embedded_runs else None,
                slots=(settings.run_slots or slots.default_slots())
                if settings.embedded_runs
                else None,
            ),
            db_clock=self.db.is_postgres and isinstance(self.clock, SystemClock),
        )
        self._joined = False
        self.lifecycle = Lifecycle(
            settings.repos_dir,
            self.defaults,
            settings.executor,
            self.events,
            settings.node_name,
            load_rules(settings),
        )
        self.runner = Runner(
            self.db,
            self.clock,
            self.executor,
            self.preparer,
            self.lifecycle,
            bounds=(settings.pending_timeout_s, settings.starting_timeout_s),
            run_slots=settings.run_slots,
            slot_weights=_slot_weights(settings.slot_weights),
        )
        self.runner.fenced = lambda: self.membership.fenced
        self.runner.batch_runs = settings.embedded_runs
        # `dockyard worker` hosts: their registration, heartbeats, claims and runs over HTTP
        self.workers = WorkerSide(
            self.db,
            self.clock,
            self.lifecycle,
            self.preparer,
            self.beacon_secret,
            settings.base_url,
            db_clock=self.membership.db_clock,
        )
        self.runner.others_alive = self._others_alive
        self.heartbeat = nodes.Heartbeat(self.membership, self.lifecycle, self.preparer.run_dir)
        self.heartbeat.judges.append(self._end_unplaceable)
        self._given_up_since: datetime | None = None
        self.prewarmer = Prewarmer(
            self.db,
            self.preparer,
            self.executor,
            self.lifecycle,
            # timed runs prepared ahead here would run here: not when workers take batch runs
            settings.prewarm_s if settings.embedded_runs else 0.0,
            settings.prewarm_max,
        )
        self.prewarmer.take_slot = self.runner.take_slot
        # held processes for any run of a recently used job (warm starts); workers take batch
        # runs when embedded runs are off: then nothing is held here
        self.warm_pool = WarmPool(
            self.db,
            self.clock,
            self.preparer,
            self.executor,
            self.lifecycle,
            warmpool.capacity(settings.warm_pool_mb) if settings.embedded_runs else 0,
            settings.warm_idle_s,
        )
        self.warm_pool.release = self.runner.release_held
        self.warm_pool.slot_free = self.runner.take_slot
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
        # the alert outbox's sender (rows are written with the run's end; woken after it)
        self.alerts = alert_delivery.Sender(
            self.db,
            self.clock,
            self.keys,
            alert_delivery.Policy(
                settings.alert_backoff_s,
                settings.alert_max_attempts,
                settings.alert_timeout_s,
                settings.base_url,
            ),
        )
        self.events.subscribe(RunEnded, lambda _event: self.alerts.wake())
        # several servers on one PostgreSQL: each one's committed events wake the others' loops
        self.crossing = self._crossing() if self.db.is_postgres else None
        self.reconciler = Reconciler(self.db, settings.repos_dir, self.events, self.clock)
        self.sweeper = Sweeper(
            self.reconciler, settings.sweep_interval_s, self.leases.guard(leases.SWEEP)
        )
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
            self.leases.guard(leases.RETENTION),
        )
        self.leases.guard(leases.SWEEP).on_acquired(self.sweeper.wake)
        self.leases.guard(leases.RETENTION).on_acquired(self.retention.wake)

    def _crossing(self) -> notify.Crossing:
        run_loop, scheduler = [self.runner.wake, self.workers.wake], [self.scheduler.wake]
        crossing = notify.Crossing(
            self.db.engine,
            {
                "RunCreated": run_loop,
                "RunRequeued": run_loop,
                "StopRequested": run_loop,
                "RunEnded": [self.runner.wake, self.alerts.wake],
                "Deployed": scheduler,
                "ScheduleChanged": scheduler,
            },
        )
        crossing.watch(self.events)
        return crossing

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

    def join(self) -> None:
        """Register this server as a node (Conflict when a live one has its name); the
        server calls it before it listens, `start` when nobody did."""
        if not self._joined:
            self._given_up_since = self.membership.join()
            self._joined = True

    def _end_unplaceable(self, now: datetime) -> None:
        unplaced.end_unplaceable(
            self.db, self.lifecycle, now, self.settings.placement_wait_s, self.preparer.run_dir
        )

    def _others_alive(self) -> bool:
        with self.db.session() as session:
            return nodes.others_alive(session, self.membership.name, self.membership.now(session))

    def start(self) -> None:
        self.leases.start()  # first: a lone server holds its leases before the loops run
        self.join()
        self.heartbeat.start()
        self.prewarmer.recover()
        self.runner.recover(self._given_up_since)
        self.runner.start_loop()
        self.scheduler.start()
        if self.warm_pool.enabled:
            self.warm_pool.start()
        self.sweeper.start()
        self.apps.monitor.start()
        self.retention.start()
        self.alerts.start()
        if self.crossing is not None:
            self.crossing.start()

    def stop(self) -> None:
        """Stop the loops; the runner's stop also stops the apps (`Runner.stop_apps`). Once
        only: the server calls it from its lifespan and again after a forced exit (a second
        Ctrl-C skips the lifespan's end)."""
        if self._stopped:
            return
        self._stopped = True
        if self.crossing is not None:
            self.crossing.stop()
        self.alerts.stop()
        self.retention.stop()
        self.apps.monitor.stop()
        self.sweeper.stop()
        self.scheduler.stop()
        self.warm_pool.stop()
        self.runner.stop()
        self.leases.stop()  # released: another server takes over at its next renewal
        self.heartbeat.stop()
        if self._joined:
            self.membership.leave()
        self.db.dispose()


def _slot_weights(value: str) -> dict[str, int]:
    try:
        return slots.parse_weights(value)
    except ValueError as exc:
        raise InvalidInput(
            f"DOCKYARD_SLOT_WEIGHTS: {exc}; write SIZE=N pairs, e.g. large=2,xlarge=4"
        ) from None


def load_rules(settings: Settings) -> placement.Rules:
    """The placement file's rules (`DOCKYARD_PLACEMENT`); none: every run in the default pool.
    A bad file raises PlacementError, and the server refuses to start."""
    if not settings.placement:
        return placement.Rules()
    return placement.Rules.load(Path(settings.placement))


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
            settings.envs_dir,
            settings.base_url,
            settings.data_dir / "pycache",
            isolation,
            nice=settings.run_nice,
        )

    return Fleet(settings.executor, {"local": local_executor, "docker": docker})


class Sweeper(Loop):
    """Reconciles every workspace whose HEAD moved without a push event reaching us. With a
    lease (`leases.SWEEP`), only while this process holds it, each write fenced by it."""

    name = "sweep"

    def __init__(
        self, reconciler: Reconciler, interval_s: float, lease: leases.Guard | None = None
    ) -> None:
        super().__init__()
        self.reconciler = reconciler
        self.interval_s = interval_s
        self.lease = lease

    def step(self) -> float:
        if self.lease is None:
            self.reconciler.sweep()
            return self.interval_s
        fence = self.lease.held()
        if fence is None:  # another server sweeps; woken if this one takes the lease over
            return self.interval_s
        try:
            self.reconciler.sweep(fence)
        except leases.LeaseLost as exc:
            log.warning(exc.message, extra={"action": "sweep", "lease": fence.name})
        return self.interval_s
