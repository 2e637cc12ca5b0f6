"""The executor port: build a run's environment, start the run, observe it, stop it, adopt
it after a restart.

The controller describes a run as a `RunPlan` in its own terms (host paths, requirement set,
path-free environment); each executor places it: the local one as a supervised process
group with a virtualenv, the Docker one as a container with mounts and an image.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dockyard.controller.envs import EnvSpec
from dockyard.shim.rundir import ExitStatus as ExitStatus  # how a run ended (the run-dir record)

LineSink = Callable[[str], None]
CODE_IN_CONTAINER = "/workspace"  # where a container sees the checkout (tracebacks name it)


@dataclass(frozen=True, slots=True)
class RunPlan:
    run_id: str
    run_dir: Path  # logs, status files, the run's own settings folder
    env: EnvSpec  # the requirement set the run's environment must hold
    code: Path  # the deployment's checkout (read-only use)
    settings: Path  # the run's `.dlt` folder (configuration at its version)
    var: Path  # pipelines' working dirs and local destinations, kept across deployments
    launcher: str  # dlt's launcher module
    launch_args: list[str] | None  # --run-id … ; None for a held run (released later)
    environment: dict[str, str]  # path-free variables: profile, run id, workspace
    beacon_token: str
    labels: dict[str, str] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)  # `require.instance`
    ports: tuple[int, ...] = ()  # interactive jobs listen here
    hold_timeout_s: float = 0.0
    executor: str | None = None  # which executor places it (None: the server's default)
    workspace_id: int | None = None  # jobs run as this workspace's user where that is possible

    @property
    def held(self) -> bool:
        return self.launch_args is None


@dataclass(frozen=True, slots=True)
class RunSpec:
    run_id: str
    run_dir: Path
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    held: bool = False  # a run prepared ahead of its tick, waiting to be released
    sandboxed: bool = False  # argv starts bwrap (the supervisor reads its --info-fd)
    uid: int | None = None  # the job's own user (it must be able to read the release FIFO)


class Executor(Protocol):
    name: str

    @property
    def supports_held(self) -> bool:
        """Whether it can start a run before its tick and release it at the tick."""

    def env_ready(self, spec: EnvSpec) -> bool:
        """Whether the environment (virtualenv, image) for this requirement set exists."""

    def ensure_env(self, spec: EnvSpec, sink: LineSink) -> None:
        """Build the environment unless it exists; build output goes to `sink`."""

    def start(self, plan: RunPlan) -> None:
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
