"""Several executors behind one: each run goes to the executor its workspace chose (or the
server's default), and everything the runner later asks about a run is routed by what its
run directory says it was started with."""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.controller.envs import EnvSpec
from dockyard.controller.executors.base import Executor, ExitStatus, LineSink, RunPlan
from dockyard.errors import InvalidInput
from dockyard.shim import rundir

NAMES = ("local", "docker")


class Fleet:
    name = "fleet"

    def __init__(self, default: str, factories: dict[str, Callable[[], Executor]]) -> None:
        self.default = default
        self._factories = factories
        self._made: dict[str, Executor] = {}
        self._wake: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def get(self, name: str | None) -> Executor:
        """The executor called `name` (made on first use), the default for None."""
        name = name or self.default
        if name not in self._factories:
            raise InvalidInput(f"unknown executor {name!r}; use one of {', '.join(NAMES)}")
        with self._lock:
            if name not in self._made:
                made = self._factories[name]()
                if self._wake is not None:
                    made.on_exit(self._wake)
                self._made[name] = made
            return self._made[name]

    @property
    def supports_held(self) -> bool:
        return self.get(None).supports_held

    def _of(self, run_dir: Path) -> Executor:
        return self.get(rundir.executor_of(run_dir))

    # the Executor protocol ------------------------------------------------------------------
    def env_ready(self, spec: EnvSpec) -> bool:
        return self.get(None).env_ready(spec)

    def ensure_env(self, spec: EnvSpec, sink: LineSink) -> None:
        self.get(None).ensure_env(spec, sink)

    def start(self, plan: RunPlan) -> None:
        self.get(plan.executor).start(plan)

    def launched(self, run_dir: Path) -> bool:
        return rundir.launched(run_dir)

    def poll(self, run_dir: Path) -> ExitStatus | None:
        return self._of(run_dir).poll(run_dir)

    def signal(self, run_dir: Path, signum: int) -> bool:
        return self._of(run_dir).signal(run_dir, signum)

    def on_exit(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        for made in self._made.values():
            made.on_exit(wake)

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        return self._of(run_dir).release(run_dir, payload)

    def held_unreleased(self, run_dir: Path) -> bool:
        return self._of(run_dir).held_unreleased(run_dir)
