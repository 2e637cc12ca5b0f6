"""An executor that runs nothing, for tests of the runner and the lifecycle in milliseconds.

It keeps in memory what a real executor keeps in its run directories: which runs were
started (with their plans), the signals each got, what held runs were released with. A test
ends a run with any exit (`exit`), or lets signals end it (`ends_on`: SIGKILL by default, as
a real process). Shipped beside `clock.FakeClock`, the fake of the other port the runner
depends on; it is never used by a server.
"""

import signal as signals
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.controller.envs import EnvSpec
from dockyard.controller.executors.base import ExitStatus, LineSink, RunPlan
from dockyard.errors import DockyardError


@dataclass
class FakeRun:
    plan: RunPlan
    signals: list[int] = field(default_factory=list)
    released: dict[str, Any] | None = None
    exit: ExitStatus | None = None


class FakeExecutor:
    name = "local"

    def __init__(self, ends_on: tuple[int, ...] = (int(signals.SIGKILL),)) -> None:
        self.ends_on = ends_on  # signals that end a fake process (SIGTERM too: "obedient")
        self.runs: dict[str, FakeRun] = {}  # run id → what happened to it
        self.built: list[str] = []  # environment keys, in build order
        self.start_error: str | None = None  # the next start fails with this reason
        self.build_gate: threading.Event | None = None  # builds wait on it while set up
        self._wake: Callable[[], None] = lambda: None
        self._lock = threading.Lock()

    # the test's side --------------------------------------------------------------------
    def exit(
        self,
        run_id: str,
        returncode: int | None = 0,
        signal: int | None = None,
        error: str | None = None,
    ) -> None:
        """The run's process ends with this status (the runner is woken, as by a real exit)."""
        self.runs[run_id].exit = ExitStatus(returncode, signal, error)
        self._wake()

    def started(self) -> list[str]:
        """Run ids in the order they were started (a held run counts when it started)."""
        return list(self.runs)

    def signals_of(self, run_id: str) -> list[int]:
        return list(self.runs[run_id].signals)

    # the Executor protocol --------------------------------------------------------------
    @property
    def supports_held(self) -> bool:
        return True

    def env_ready(self, spec: EnvSpec) -> bool:
        return spec.key in self.built

    def ensure_env(self, spec: EnvSpec, sink: LineSink) -> None:
        if self.build_gate is not None:
            self.build_gate.wait(timeout=30)
        if spec.key not in self.built:
            sink(f"fake environment {spec.key[:12]} built")
            self.built.append(spec.key)

    def start(self, plan: RunPlan) -> None:
        if self.start_error is not None:
            reason, self.start_error = self.start_error, None
            raise DockyardError(reason)
        with self._lock:
            if plan.run_id in self.runs:
                raise AssertionError(f"run {plan.run_id} was started twice")
            self.runs[plan.run_id] = FakeRun(plan)

    def launched(self, run_dir: Path) -> bool:
        return run_dir.name in self.runs

    def poll(self, run_dir: Path) -> ExitStatus | None:
        run = self.runs.get(run_dir.name)
        return None if run is None else run.exit

    def signal(self, run_dir: Path, signum: int) -> bool:
        run = self.runs.get(run_dir.name)
        if run is None or run.exit is not None:
            return False
        run.signals.append(int(signum))
        if int(signum) in self.ends_on:
            self.exit(run_dir.name, None, int(signum))
        return True

    def on_exit(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        run = self.runs.get(run_dir.name)
        if run is None or run.exit is not None or run.released is not None:
            return False
        run.released = payload
        if payload.get("discard"):
            self.exit(run_dir.name, 75)
        return True

    def held_unreleased(self, run_dir: Path) -> bool:
        run = self.runs.get(run_dir.name)
        return run is not None and run.plan.held and run.released is None
