"""The controller, assembled once from settings: store, git repositories, reconciler,
runner and executor, plus the periodic sweep that catches any missed push event.
"""

import logging
import sys
import threading

from dockyard.clock import Clock, SystemClock
from dockyard.controller import auth, beacon, envs, workspaces
from dockyard.controller.dispatch import Dispatcher
from dockyard.controller.executors.base import Executor
from dockyard.controller.executors.local import LocalExecutor
from dockyard.controller.prepare import Preparer
from dockyard.controller.prewarm import Prewarmer
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.runner import Runner
from dockyard.controller.runtime_config import Defaults
from dockyard.controller.scheduler import Scheduler
from dockyard.controller.store.db import Database
from dockyard.errors import DockyardError
from dockyard.settings import Settings

log = logging.getLogger(__name__)


class Controller:
    def __init__(
        self, settings: Settings, clock: Clock | None = None, executor: Executor | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        for path in (settings.data_dir, settings.repos_dir, settings.runs_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.database_url)
        self.db.migrate()
        self.beacon_secret = beacon.load_secret(settings.data_dir / "beacon.key")
        self.hooks = workspaces.HookInstaller(sys.executable, settings.max_workspace_bytes)
        self.defaults = Defaults(settings.default_timeout_s, settings.default_grace_s)
        self.executor: Executor = executor or LocalExecutor()
        self.preparer = Preparer(settings, envs.EnvBuilder(settings.envs_dir), self.beacon_secret)
        self.dispatcher = Dispatcher(settings.repos_dir, self.defaults)
        self.runner = Runner(
            self.db,
            self.clock,
            self.executor,
            self.preparer,
            self.dispatcher,
            bounds=(settings.pending_timeout_s, settings.starting_timeout_s),
        )
        self.prewarmer = Prewarmer(
            self.db,
            self.preparer,
            self.executor,
            self.dispatcher,
            settings.prewarm_s,
            settings.prewarm_max,
        )
        self.runner.prewarmer_forget = self.prewarmer.forget
        self.scheduler = Scheduler(
            self.db,
            self.clock,
            self.dispatcher,
            self.runner.wake,
            self.prewarmer,
            self.runner.release_prepared,
        )
        self.reconciler = Reconciler(self.db, settings.repos_dir, self._deployed, self.clock)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def _deployed(self, workspace: str) -> None:
        self.scheduler.wake()
        self.runner.prebuild(workspace)

    def bootstrap(self) -> str | None:
        """Admin token and repository hooks; returns a newly generated admin token."""
        with self.db.session() as session:
            generated = auth.ensure_admin(session, self.settings.admin_token)
            names = [w.name for w in workspaces.list_all(session)]
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
        self._sweeper = threading.Thread(target=self._sweep_loop, name="sweep", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.stop()
        self.runner.stop()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
        self.db.dispose()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                self.reconciler.sweep()
            except DockyardError as exc:
                log.warning("sweep failed", extra={"action": "sweep", "error": exc.message})
            except Exception:  # keep sweeping whatever one workspace throws
                log.exception("sweep failed", extra={"action": "sweep"})
