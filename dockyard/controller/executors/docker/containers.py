"""Runs as containers: one per run (`dockyard-run-<run id>`), labelled with workspace, job,
run and deployment, running the same shim and launcher command as the local executor under
Docker's init (so signals reach the job).

A run's end is read from its container (exit code, OOM kill) and recorded in the run
directory like a supervisor's (`exit.json`), after its last lines are in the log; then the
container is removed. Everything is found again by name and label after a controller
restart. While the engine is away the run is not given up at once: it may go on, or have
ended with the engine, which is said in its reason (see `events.py`).
"""

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docker.errors import NotFound

from dockyard.controller.executors import releases, sandbox
from dockyard.controller.executors.base import CODE_IN_CONTAINER, ExitStatus, RunPlan
from dockyard.controller.executors.docker.config import (
    CA_PATH,
    PATH,
    SERVER_LABEL,
    DockerConfig,
    network_environment,
)
from dockyard.controller.executors.docker.engine import ENGINE_ERRORS, epoch, where
from dockyard.controller.executors.docker.events import Outages, gave_up
from dockyard.controller.executors.docker.images import Images
from dockyard.controller.executors.docker.logs import LogFollower
from dockyard.shim import SHIM, rundir

log = logging.getLogger(__name__)
IN_CONTAINER = {
    "code": CODE_IN_CONTAINER,
    "settings": "/run/dlt",
    "var": "/var/dockyard",
    "work": "/work",
    "shim": "/opt/dockyard/dlt_shim.py",
    "release": "/run/dockyard-release",  # a held run's release FIFO, read-only
}
SIZES = {  # `require={"instance": {"size": …}}` → CPUs, memory
    "small": (1.0, 1 << 30),
    "medium": (2.0, 4 << 30),
    "large": (4.0, 8 << 30),
}
ALIVE = ("created", "running", "restarting", "paused")


def container_name(run_id: str) -> str:
    return f"dockyard-run-{run_id}"


class Containers:
    def __init__(
        self,
        config: DockerConfig,
        outages: Outages,
        images: Images,
        beacon_url: Callable[[], str],
    ) -> None:
        self.config = config
        self.outages = outages
        self.engine = outages.engine
        self.images = images
        self.beacon_url = beacon_url
        self.logs = LogFollower(self._container)
        # held runs: the controller's end of each one's release FIFO (read-write, so neither
        # the job's open() nor a write ever blocks; closed when the controller dies: EOF)
        self._releases: dict[Path, int] = {}
        self._lock = threading.Lock()

    def _container(self, run_id: str) -> Any:
        return self.engine.client.containers.get(container_name(run_id))

    # start ----------------------------------------------------------------------------------
    def start(self, plan: RunPlan) -> None:
        work = plan.run_dir / rundir.WORK
        (work / "scratch").mkdir(parents=True, exist_ok=True)
        plan.var.mkdir(parents=True, exist_ok=True)
        uid = self._uid(plan)
        user = self._user(plan, work, uid)
        name = container_name(plan.run_id)
        volumes = self._volumes(plan, work)
        shim = ["python", "-u", IN_CONTAINER["shim"]]
        if plan.launch_args is None:  # held: waits, imports done, for its launch arguments
            fd = releases.open_fifo(plan.run_dir, uid)
            with self._lock:
                self._releases[plan.run_dir] = fd
            fifo = plan.run_dir / rundir.RELEASE
            volumes[str(fifo)] = {"bind": IN_CONTAINER["release"], "mode": "ro"}
            marker = f"{IN_CONTAINER['work']}/{rundir.RELEASED}"
            hold = str(plan.hold_timeout_s)
            command = [*shim, "held", IN_CONTAINER["release"], marker, plan.launcher, hold]
        else:
            command = [*shim, "launch", plan.launcher, *plan.launch_args]
        tag = self.images.tag(plan.env)
        try:
            self.engine.client.containers.run(
                tag,
                command,
                name=name,
                detach=True,
                init=True,
                labels={**plan.labels, **self.images.server_label()},
                environment=self._environment(plan),
                working_dir=IN_CONTAINER["code"],
                user=user,
                volumes=volumes,
                network_mode=self.config.network,
                ports={f"{p}/tcp": ("127.0.0.1", p) for p in plan.ports},
                **limits(plan.instance),
            )
        except BaseException:
            self._close_release(plan.run_dir)
            raise
        spec = {"executor": "docker", "container": name, "held": plan.held}
        rundir.write_json(plan.run_dir / rundir.SPEC, spec)
        self.logs.secrets(plan.run_dir)  # read while the run's configuration is there
        self.logs.follow(plan.run_id, plan.run_dir)
        self.images.record_use(tag)

    # held runs ------------------------------------------------------------------------------
    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        """Hand a held run its launch arguments (or `{"discard": true}`); False if it is not
        one this controller holds. Its secrets were written just before: the log hides them
        from the job's first line on."""
        with self._lock:
            fd = self._releases.get(run_dir)
        if fd is None:
            return False
        if "args" in payload:
            self.logs.reload_secrets(run_dir)
        return releases.write(fd, payload)

    def held_unreleased(self, run_dir: Path) -> bool:
        return releases.unreleased(run_dir, rundir.WORK)

    def _close_release(self, run_dir: Path) -> None:
        with self._lock:
            fd = self._releases.pop(run_dir, None)
        if fd is not None:
            os.close(fd)

    def _uid(self, plan: RunPlan) -> int | None:
        """The workspace's own uid when the server is root (as on the local executor)."""
        if self.config.uid_base is None:
            return None
        return sandbox.workspace_user(self.config.uid_base, plan.workspace_id)

    def _user(self, plan: RunPlan, work: Path, uid: int | None) -> str:
        """The container's user: the workspace's own uid, with the run's folders made its;
        else the server's uid."""
        if uid is None:
            return self.config.user
        sandbox.give_all((plan.settings, plan.code, plan.var, work), uid)
        return f"{uid}:{uid}"

    def _volumes(self, plan: RunPlan, work: Path) -> dict[str, dict[str, str]]:
        volumes = {
            str(plan.code): {"bind": IN_CONTAINER["code"], "mode": "ro"},
            str(plan.settings): {"bind": IN_CONTAINER["settings"], "mode": "ro"},
            str(plan.var): {"bind": IN_CONTAINER["var"], "mode": "rw"},
            str(work): {"bind": IN_CONTAINER["work"], "mode": "rw"},
            str(SHIM): {"bind": IN_CONTAINER["shim"], "mode": "ro"},
        }
        if self.config.ca_bundle:
            volumes[self.config.ca_bundle] = {"bind": CA_PATH, "mode": "ro"}
        return volumes

    def _environment(self, plan: RunPlan) -> dict[str, str]:
        env = dict(network_environment(self.config))
        env.update(plan.environment)
        env.update(
            {
                "PATH": PATH,
                "VIRTUAL_ENV": "/env",
                "PYTHONUNBUFFERED": "1",
                "LANG": "C.UTF-8",
                "HOME": IN_CONTAINER["work"],
                "TMPDIR": f"{IN_CONTAINER['work']}/scratch",
                # the image's packages are compiled at build time; the code mount is read-only
                "PYTHONDONTWRITEBYTECODE": "1",
                "DLT_CONFIG_FOLDER": IN_CONTAINER["settings"],
                "DLT_DATA_DIR": f"{IN_CONTAINER['var']}/pipelines",
                "DLT_LOCAL_DIR": f"{IN_CONTAINER['var']}/local",
                "RUNTIME__DLTHUB_DSN": f"{self.beacon_url()}/beacon/{plan.beacon_token}",
            }
        )
        return env

    # watch ----------------------------------------------------------------------------------
    def poll(self, run_dir: Path) -> ExitStatus | None:
        ended = rundir.read_exit(run_dir)
        if ended is not None:
            return ended
        run_id = run_dir.name
        try:
            container = self._container(run_id)
        except NotFound:
            return self._lost(run_dir)
        except ENGINE_ERRORS:
            self.outages.lost()
            return self._engine_away(run_dir)
        self.outages.back()
        state = container.attrs["State"]
        if state.get("Status") in ALIVE:
            self.logs.follow(run_id, run_dir)  # adopted after a restart: attach to its output
            return None
        return self._collect(container, run_dir, state)

    def _engine_away(self, run_dir: Path) -> ExitStatus | None:
        """The engine cannot be asked about the run: wait for it (the run goes on, or its
        end and its last lines are read once the engine is back), up to ENGINE_GIVE_UP_S."""
        away = self.outages.away_for()
        if not gave_up(away):
            return None
        stopped = _engine_stop(run_dir)
        if stopped is not None:
            reason = stopped + "; its last lines are missing"
        else:
            reason = f"lost: the docker engine at {where()} was unreachable for {away:.0f} s"
        return _ended(run_dir, ExitStatus(None, None, reason), None)

    def _collect(self, container: Any, run_dir: Path, state: dict[str, Any]) -> ExitStatus | None:
        """The container ended: finish reading its output, record the exit, remove it."""
        code = int(state.get("ExitCode", -1))
        error = "out of memory" if state.get("OOMKilled") else None
        stopped = _engine_stop(run_dir)
        if stopped is not None:
            error = stopped
        elif error is None and code > 128 and not (run_dir / rundir.SIGNALLED).exists():
            error = self.outages.stop_reason(code - 128, epoch(state.get("FinishedAt")))
            if error is not None and self.outages.away:
                # the engine is going down with it: read its last lines once it is back
                rundir.write_json(run_dir / rundir.ENGINE_STOP, {"reason": error})
                return None
        self.logs.finish(run_dir.name, run_dir)
        self._close_release(run_dir)
        status = ExitStatus(
            code if code <= 128 else None, code - 128 if code > 128 else None, error
        )
        rundir.write_exit(run_dir, status, state.get("FinishedAt"))
        try:
            container.remove(force=True)
        except ENGINE_ERRORS:  # removed by the sweep once the engine is back
            log.warning(
                "container not removed",
                extra={"action": "remove_container", "run_id": run_dir.name},
            )
        return status

    def _lost(self, run_dir: Path) -> ExitStatus:
        reason = "lost: the run's container is gone (removed, or the docker engine lost it)"
        return _ended(run_dir, ExitStatus(None, None, reason), None)

    def signal(self, run_dir: Path, signum: int) -> bool:
        with (run_dir / rundir.SIGNALLED).open("a") as marker:  # its end is then ours
            marker.write(f"{signum}\n")
        try:
            container = self._container(run_dir.name)
            if signum == signal.SIGKILL and self.held_unreleased(run_dir):
                # a held container never released (left by a restart): nothing of it is
                # wanted, its folder goes next; so does the container
                container.remove(force=True)
            else:
                container.kill(signal=signum)
        except ENGINE_ERRORS:
            return False
        return True

    def sweep(self) -> list[str]:
        """Remove the containers of runs whose end is already recorded (left behind when
        the engine went away while their logs were being collected)."""
        removed: list[str] = []
        runs_dir = self.config.runs_dir
        if runs_dir is None:
            return removed
        try:
            found = self.engine.client.containers.list(
                all=True, filters={"label": "dockyard.run_id"}
            )
            for container in found:
                run_id = container.labels.get("dockyard.run_id", "")
                if run_id and sweepable(container.labels, runs_dir / run_id, self.images.server_id):
                    container.remove(force=True)
                    removed.append(run_id)
        except ENGINE_ERRORS as exc:
            log.warning("container sweep failed", extra={"action": "sweep", "error": str(exc)})
        return removed


def sweepable(labels: dict[str, str], run_dir: Path, server_id: str | None) -> bool:
    """A container to remove: its run's end is recorded (it must not go on unseen), or it
    is one of this server's (never another's on the same engine) and its run folder is
    gone (a held container never taken, its folder removed by a restart's recovery)."""
    if rundir.ended(run_dir):
        return True
    ours = server_id is not None and labels.get(SERVER_LABEL) == server_id
    return ours and not run_dir.exists()


def _engine_stop(run_dir: Path) -> str | None:
    """Why the run's container ended with the engine, when that was recorded."""
    if not (run_dir / rundir.ENGINE_STOP).exists():
        return None
    return str(json.loads((run_dir / rundir.ENGINE_STOP).read_text())["reason"])


def _ended(run_dir: Path, status: ExitStatus, finished_at: str | None) -> ExitStatus:
    rundir.write_exit(run_dir, status, finished_at)
    return status


def limits(instance: dict[str, Any]) -> dict[str, Any]:
    """Docker's limits for `require.instance.size` (none for an unknown size)."""
    size = instance.get("size")
    if size not in SIZES:
        return {}
    cpus, memory = SIZES[size]
    # no swap on top of the memory limit: over it, the kernel's OOM killer ends the run
    return {"nano_cpus": int(cpus * 1e9), "mem_limit": memory, "memswap_limit": memory}
