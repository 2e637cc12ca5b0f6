"""The executor port: start a prepared run, observe it, stop it, adopt it after a restart."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class RunSpec:
    run_id: str
    run_dir: Path
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    held: bool = False  # a run prepared ahead of its tick, waiting to be released


@dataclass(frozen=True, slots=True)
class ExitStatus:
    returncode: int | None
    signal: int | None
    error: str | None = None


class Executor(Protocol):
    name: str

    def start(self, spec: RunSpec) -> None:
        """Start the run; returns once the process is launched (not finished)."""

    def launched(self, run_dir: Path) -> bool:
        """Whether `start` got as far as handing the run to the process supervisor."""

    def poll(self, run_dir: Path) -> ExitStatus | None:
        """The exit status once the run has ended, else None."""

    def signal(self, run_dir: Path, signum: int) -> bool:
        """Signal the run's process group; False when it is already gone."""

    def on_exit(self, wake: Callable[[], None]) -> None:
        """Call `wake` as soon as a run may have ended (the runner then polls at once)."""

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        """Hand a held run its launch arguments (or `{"discard": true}`); False if it is gone."""

    def held_unreleased(self, run_dir: Path) -> bool:
        """A held run that was never released (its controller died before the tick)."""
