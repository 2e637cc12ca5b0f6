"""A source commit's manifest built in a container, for a workspace on the Docker executor:
the same shim, in an environment image built the way the Docker executor builds its run images
(`executors/docker/images.py`: the base image, uv, the commit's declared dependencies), so the
workspace's code is imported where its jobs will run, never on the host.

The container gets no network (only the image build does, as for runs), the checkout
read-only, its stage and scratch folders, the shim, the shim's private `pathspec` and uv, all
bind-mounted at their host paths so the shim's answer names the same paths the host reads
back; as root it runs as the workspace's uid. It is removed when it ends or after
`inspection.INSPECT_TIMEOUT_S`.
"""

import contextlib
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from docker.types import Mount
from requests.exceptions import ConnectionError as Unreachable
from requests.exceptions import ReadTimeout, RequestException

from dockyard.controller import envs, inspection
from dockyard.controller.executors import sandbox
from dockyard.controller.executors.docker.containers import limits
from dockyard.controller.executors.docker.executor import DockerExecutor
from dockyard.errors import Unavailable
from dockyard.shim import SHIM

log = logging.getLogger(__name__)
PYTHON = "/env/bin/python"
PATH = "/env/bin:/usr/local/bin:/usr/bin:/bin"
ENGINE = (DockerException, RequestException, OSError)  # the engine failed (not the workspace)
SIZE = {"size": "small"}  # the limits of a run of the smallest instance size


@dataclass(frozen=True, slots=True)
class InContainer:
    executor: DockerExecutor

    def image(self, root: Path) -> str:
        """The environment image for the commit's declared dependencies (built once)."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        spec = envs.EnvSpec(version, tuple(inspection.declared(root)))
        try:
            self.executor.images.ensure(spec, lambda line: _log_line(line, spec.key))
        except ENGINE as exc:
            raise Unavailable(f"the Docker engine failed building the image: {exc}") from None
        return self.executor.images.tag(spec)

    def runner(
        self, image: str, root: Path, work: Path, shimlib: Path, workspace_id: int
    ) -> inspection.Runner:
        user = self._user(root, work, workspace_id)
        sandbox.readable(shimlib)  # the workspace's user reads it, as in the local sandbox

        def run(argv: list[str], stage: Path, env: dict[str, str]) -> Any:
            if user != self.executor.config.user:
                sandbox.give(stage, *(int(x) for x in user.split(":")))
            inside = {**env, "PATH": f"{Path(inspection.uv_bin()).parent}:{PATH}"}
            mounts = _mounts([root, SHIM.parent, shimlib], [work, stage])
            return self._run(image, [PYTHON, *argv[1:]], inside, mounts, user, root)

        return run

    def _user(self, root: Path, work: Path, workspace_id: int) -> str:
        base = self.executor.config.uid_base
        uid = sandbox.workspace_user(base, workspace_id) if base is not None else None
        if uid is None:
            return self.executor.config.user
        for path in (root, work):
            sandbox.give(path, uid, uid)
        return f"{uid}:{uid}"

    def _run(
        self, image: str, argv: list[str], env: dict[str, str], mounts: list[Mount], user: str,
        cwd: Path,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        try:
            container = self._start(image, argv, env, mounts, user, cwd)
            try:
                return _ended(container, argv)
            finally:
                with contextlib.suppress(*ENGINE):
                    container.remove(force=True)
        except ENGINE as exc:
            raise Unavailable(f"the Docker engine failed during the inspection: {exc}") from None

    def _start(
        self, image: str, argv: list[str], env: dict[str, str], mounts: list[Mount], user: str,
        cwd: Path,
    ) -> Any:  # fmt: skip
        client = self.executor.engine.client
        uv = inspection.uv_bin()
        return client.containers.run(
            image,
            argv,
            detach=True,
            init=True,
            environment=env,
            working_dir=str(cwd),
            user=user,
            mounts=[*mounts, Mount(uv, uv, type="bind", read_only=True)],
            network_mode="none",
            labels={"dockyard.inspect": "1", **self.executor.images.server_label()},
            **limits(SIZE),
        )


def _ended(container: Any, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """How the container ended, its stdout (the shim's answer) and stderr."""
    try:
        code = container.wait(timeout=inspection.INSPECT_TIMEOUT_S)["StatusCode"]
    except (ReadTimeout, Unreachable) as exc:
        raise subprocess.TimeoutExpired(argv, inspection.INSPECT_TIMEOUT_S) from exc
    out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
    err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
    return subprocess.CompletedProcess(argv, code, out, err)


def _mounts(read_only: list[Path], writable: list[Path]) -> list[Mount]:
    """Bind mounts at the host's own paths."""
    ro = [Mount(str(p), str(p), type="bind", read_only=True) for p in read_only]
    return ro + [Mount(str(p), str(p), type="bind") for p in writable]


def _log_line(line: str, key: str) -> None:
    log.info(line, extra={"action": "source_image", "env": key})


def in_container(executor: object) -> InContainer | None:
    """How to build a manifest for a workspace on `executor`: in a container for Docker."""
    return InContainer(executor) if isinstance(executor, DockerExecutor) else None
