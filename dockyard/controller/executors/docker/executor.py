"""`DockerExecutor`: the executor port (`executors/base.py`) over the parts in this package.

It holds them together and answers the runner; the work is in `images` (environment images),
`containers` (a run's container, its end, its removal), `logs` (its output into the run log)
and `events` (the engine's event stream and outages). Every time a decision needs (outages,
how long the engine has been away, when an image was last used) is read from the `Clock`
it is given.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from dockyard.clock import Clock, SystemClock
from dockyard.controller import envs
from dockyard.controller.executors.base import ExitStatus, LineSink, RunPlan
from dockyard.controller.executors.docker import events
from dockyard.controller.executors.docker.config import DockerConfig
from dockyard.controller.executors.docker.containers import Containers, container_name
from dockyard.controller.executors.docker.engine import Engine
from dockyard.controller.executors.docker.images import Images
from dockyard.settings import Settings
from dockyard.shim import rundir


class DockerExecutor:
    name = "docker"
    supports_held = True
    port: int | None = None  # the server's port: on a bridge network the beacon is there

    def __init__(
        self,
        config: DockerConfig,
        client: Callable[[], Any] = docker.DockerClient.from_env,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.engine = Engine(client)
        self.outages = events.Outages(self.engine, clock or SystemClock())
        self.images = Images(config, self.engine, self.outages.clock)
        self.containers = Containers(config, self.outages, self.images, lambda: self.beacon_url)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> "DockerExecutor":
        config = DockerConfig(
            settings.docker_base_image,
            settings.docker_network,
            settings.docker_ca_bundle,
            settings.docker_keep_images,
            beacon_url=settings.base_url,
            state_dir=settings.data_dir,
            runs_dir=settings.runs_dir,
            uid_base=settings.sandbox_uid_base,
        )
        executor = cls(config, clock=clock or SystemClock())
        executor.port = settings.port
        return executor

    @property
    def client(self) -> Any:
        return self.engine.client

    @property
    def server_id(self) -> str | None:
        return self.images.server_id

    def image_labels(self, env_key: str) -> dict[str, str]:
        return self.images.labels(env_key)

    def image_tag(self, spec: envs.EnvSpec) -> str:
        return self.images.tag(spec)

    def collect_images(self) -> list[str]:
        return self.images.collect()

    def record_use(self, tag: str, at: float | None = None) -> None:
        self.images.record_use(tag, at)

    def gateway(self) -> str:
        """The host's address on the containers' network (where the beacon listens)."""
        return self.engine.gateway(self.config.network)

    @property
    def beacon_url(self) -> str:
        """Where a container reaches the server's beacon: on a bridge network, the host's
        gateway address (the server listens there for the beacon only)."""
        if self.config.network == "host" or self.port is None:
            return self.config.beacon_url
        return f"http://{self.gateway()}:{self.port}"

    @staticmethod
    def container_name(run_id: str) -> str:
        return container_name(run_id)

    def sweep(self) -> list[str]:
        return self.containers.sweep()

    # the Executor protocol ------------------------------------------------------------------
    def env_ready(self, spec: envs.EnvSpec) -> bool:
        return self.images.ready(spec)

    def ensure_env(self, spec: envs.EnvSpec, sink: LineSink) -> None:
        self.images.ensure(spec, sink)

    def start(self, plan: RunPlan) -> None:
        self.containers.start(plan)

    def launched(self, run_dir: Path) -> bool:
        return rundir.launched(run_dir)

    def poll(self, run_dir: Path) -> ExitStatus | None:
        return self.containers.poll(run_dir)

    def signal(self, run_dir: Path, signum: int) -> bool:
        return self.containers.signal(run_dir, signum)

    def on_exit(self, wake: Callable[[], None]) -> None:
        events.start_watching(self.outages, wake, on_back=self.containers.sweep)

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        return self.containers.release(run_dir, payload)

    def held_unreleased(self, run_dir: Path) -> bool:
        return self.containers.held_unreleased(run_dir)
