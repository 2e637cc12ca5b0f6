"""Docker executor: every run in its own container, images built from the requirements.

Images: one per requirement set (`dockyard-env:<key>`), built on a base image without a
registry: a builder container runs uv (the controller's own binary and cache, mounted) to
create `/env`, and is committed as the image, labelled with this server's id; image
collection removes only images with that label (an engine may serve several servers, and
other images may look like ours). Code is never baked in: the deployment's
checkout and the run's configuration are mounted read-only, and each run gets its own
writable working area (`/work`).

Runs: one container per run (`dockyard-run-<run id>`), labelled with workspace, job, run and
deployment, running the same shim and launcher command as the local executor under Docker's
init (so signals reach the job). Logs are streamed into the run log as they arrive, cut into
lines by the same splitter as the local supervisor's (`dockyard.shim.loglines`: Docker's
16 KiB fragments re-joined, bounded, redacted on the whole line); Docker's
event stream wakes the runner when a container dies; the exit code (and OOM kill) is read
from the container, which is removed once its logs are collected. Everything is found again
by name and label after a controller restart.
"""

import hashlib
import ipaddress
import json
import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.types import Mount
from requests.exceptions import RequestException

from dockyard.controller import envs, logs, server_id
from dockyard.controller.executors import sandbox
from dockyard.controller.executors.base import ExitStatus, LineSink, RunPlan
from dockyard.errors import Unavailable
from dockyard.settings import Settings
from dockyard.shim import SHIM, loglines, rundir

log = logging.getLogger(__name__)
ENV_REPO = "dockyard-env"
IN_CONTAINER = {
    "code": "/workspace",
    "settings": "/run/dlt",
    "var": "/var/dockyard",
    "work": "/work",
    "shim": "/opt/dockyard/dlt_shim.py",
}
CA_PATH = "/etc/ssl/certs/ca-certificates.crt"
SIZES = {  # `require={"instance": {"size": …}}` → CPUs, memory
    "small": (1.0, 1 << 30),
    "medium": (2.0, 4 << 30),
    "large": (4.0, 8 << 30),
}
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
RECIPE = "2"  # bump when the way images are built changes: old images are not reused
PATH = "/env/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what a call to an engine that went away raises (the SDK lets requests' errors through)
ENGINE_ERRORS = (DockerException, RequestException, OSError, Unavailable)
# a container that ended by a signal this long before the engine went away ended with it
# (dockerd stops its containers, waiting up to their grace period, before it exits)
OUTAGE_WINDOW_S = 30.0
# how long a run waits for an engine that went away before it ends without its container
ENGINE_GIVE_UP_S = 120.0
SERVER_LABEL = "dockyard.server"  # on images and containers: the id of the server that made them


@dataclass
class DockerConfig:
    base_image: str
    network: str = "bridge"
    ca_bundle: str | None = None
    keep_images: int = 5
    beacon_url: str = ""
    image_repo: str = ENV_REPO
    state_dir: Path | None = None  # where image use times are kept (the data directory)
    runs_dir: Path | None = None  # run directories (an `exit.json` there: the run ended)
    user: str = field(default_factory=lambda: f"{os.getuid()}:{os.getgid()}")
    uid_base: int | None = None  # as root: a workspace's runs use uid_base + workspace id


class DockerExecutor:
    name = "docker"
    supports_held = False

    def __init__(
        self, config: DockerConfig, client: Callable[[], Any] = docker.DockerClient.from_env
    ) -> None:
        self.config = config
        self._client_factory = client
        self._client: Any = None
        self._wake: Callable[[], None] = lambda: None
        self._followers: dict[str, list[threading.Thread]] = {}
        self._broken: set[str] = set()  # runs whose log stream broke (engine away)
        self._redact: dict[str, list[str]] = {}
        self._outages: list[float] = []  # when the engine was seen going away
        self._away_since: float | None = None  # the engine is unreachable since then
        self._build_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._server_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "DockerExecutor":
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
        executor = cls(config)
        executor.port = settings.port
        return executor

    port: int | None = None

    @property
    def server_id(self) -> str | None:
        """This server's id (`<data-dir>/server-id`), None without a data directory (then
        no image is ever collected: none can be told apart as ours)."""
        if self._server_id is None and self.config.state_dir is not None:
            self._server_id = server_id.ensure(self.config.state_dir)
        return self._server_id

    def image_labels(self, env_key: str) -> dict[str, str]:
        """The labels of an environment image this server builds."""
        labels = {"dockyard.env": env_key}
        if self.server_id is not None:
            labels[SERVER_LABEL] = self.server_id
        return labels

    @property
    def beacon_url(self) -> str:
        """Where a container reaches the server's beacon: on a bridge network, the host's
        gateway address (the server listens there for the beacon only)."""
        if self.config.network == "host" or self.port is None:
            return self.config.beacon_url
        return f"http://{self.gateway()}:{self.port}"

    # the engine ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = self._client_factory()
                self._client.ping()
            except DockerException as exc:
                self._client = None
                raise self._unreachable(exc) from exc
        return self._client

    def _unreachable(self, exc: Exception) -> Unavailable:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return Unavailable(
            f"docker engine unreachable at {where} ({type(exc).__name__});"
            " start dockerd or set DOCKER_HOST"
        )

    def gateway(self) -> str:
        """The host's address on the containers' network (where the beacon listens)."""
        try:
            ipam = self.client.networks.get(self.config.network).attrs["IPAM"]["Config"][0]
            if ipam.get("Gateway"):
                return str(ipam["Gateway"])
            # older engines leave the default bridge's gateway out: it is the first address
            return str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
        except (DockerException, KeyError, IndexError, ValueError, StopIteration) as exc:
            raise Unavailable(
                f"cannot find the gateway of docker network {self.config.network!r}: {exc}"
            ) from exc

    # images -------------------------------------------------------------------------------
    def image_tag(self, spec: envs.EnvSpec) -> str:
        """One image per (base image, requirement set)."""
        base = self.base_image(spec)
        key = hashlib.sha256(f"{RECIPE}\n{base}\n{spec.key}".encode()).hexdigest()[:32]
        return f"{self.config.image_repo}:{key}"

    def env_ready(self, spec: envs.EnvSpec) -> bool:
        try:
            self.client.images.get(self.image_tag(spec))
        except ImageNotFound:
            return False
        return True

    def ensure_env(self, spec: envs.EnvSpec, sink: LineSink) -> None:
        with self._guard:
            lock = self._build_locks.setdefault(spec.key, threading.Lock())
        with lock:
            if not self.env_ready(spec):
                self._build(spec, sink)
                self.collect_images()

    def _build(self, spec: envs.EnvSpec, sink: LineSink) -> None:
        base = self._base_image_present(spec, sink)
        sink(
            f"building image {self.image_tag(spec)} on {base}"
            f" ({len(spec.requirements)} requirements)"
        )
        # the builder's settings go into its script, not its config: a commit keeps a
        # container's Env, Volumes and Cmd, and the image must not carry them
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self._build_environment().items())
        script = (
            f"export {exports} && uv venv -q /env -p python3"
            " && uv pip install --compile-bytecode -p /env/bin/python "
            + " ".join(shlex.quote(r) for r in spec.requirements)
            + " && /env/bin/python -c 'import sys; print(sys.version)'"
        )
        builder = self.client.containers.run(
            base,
            ["sh", "-c", script],
            detach=True,
            labels={"dockyard.build": spec.key, **self.image_labels(spec.key)},
            mounts=self._build_mounts(),
            network_mode=self.config.network,
        )
        try:
            lines = loglines.LineSplitter(sink)
            for message in builder.logs(stream=True, follow=True):
                lines.feed(message)
            lines.close()
            code = builder.wait()["StatusCode"]
            if code != 0:
                raise Unavailable(
                    f"image build failed (exit {code}); the run log has the build output"
                )
            self._check_python(builder, spec)
            builder.commit(
                repository=self.config.image_repo,
                tag=self.image_tag(spec).split(":", 1)[1],
                conf={
                    "Env": [f"PATH={PATH}", "VIRTUAL_ENV=/env", "LANG=C.UTF-8"],
                    "Cmd": ["python"],
                    "Labels": self.image_labels(spec.key),
                },
            )
        finally:
            builder.remove(force=True)
        sink(f"built image {self.image_tag(spec)}")

    def base_image(self, spec: envs.EnvSpec) -> str:
        """The configured base image; `{python}` stands for the deployment's Python version
        (the default is `python:{python}-slim`)."""
        return self.config.base_image.replace("{python}", spec.python_version or "3.11")

    def _base_image_present(self, spec: envs.EnvSpec, sink: LineSink) -> str:
        base = self.base_image(spec)
        try:
            self.client.images.get(base)
            return base
        except ImageNotFound:
            pass
        sink(f"pulling base image {base}")
        try:
            self.client.images.pull(base)
        except DockerException as exc:
            raise Unavailable(
                f"base image {base} not found and could not be pulled ({type(exc).__name__});"
                " without a registry, build one with scripts/build-base-image.sh and set"
                " DOCKYARD_DOCKER_BASE_IMAGE=dockyard-base:py311"
            ) from exc
        return base

    def _check_python(self, builder: Any, spec: envs.EnvSpec) -> None:
        version = builder.logs(tail=1).decode().strip()
        if spec.python_version and not version.startswith(spec.python_version + "."):
            raise Unavailable(
                f"the deployment needs Python {spec.python_version}; the base"
                f" image {self.base_image(spec)} has {version.split()[0]}"
            )

    def _build_mounts(self) -> list[Mount]:
        """Bind mounts that stay out of the committed image's config (unlike `volumes`)."""
        mounts = [
            Mount("/usr/local/bin/uv", envs.uv_bin(), type="bind", read_only=True),
            Mount("/uvcache", str(uv_cache_dir()), type="bind"),
        ]
        if self.config.ca_bundle:
            mounts.append(Mount(CA_PATH, self.config.ca_bundle, type="bind", read_only=True))
        return mounts

    def _build_environment(self) -> dict[str, str]:
        env = {"UV_CACHE_DIR": "/uvcache", "UV_LINK_MODE": "copy"}
        env.update(self._network_environment())
        return env

    def _ca_volume(self) -> dict[str, dict[str, str]]:
        if self.config.ca_bundle:
            return {self.config.ca_bundle: {"bind": CA_PATH, "mode": "ro"}}
        return {}

    def _network_environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PROXY_VARS if k in os.environ}
        if self.config.ca_bundle:
            env.update(SSL_CERT_FILE=CA_PATH, REQUESTS_CA_BUNDLE=CA_PATH, PIP_CERT=CA_PATH)
        return env

    def collect_images(self) -> list[str]:
        """Keep the `keep_images` environment images this server built that were used (or
        built) most recently, and any a container still uses; remove the rest of this
        server's. Images without this server's label are never touched. Returns the tags
        removed."""
        if self.server_id is None:
            return []
        mine = {"label": f"{SERVER_LABEL}={self.server_id}"}
        try:
            images = self.client.images.list(name=self.config.image_repo, filters=mine)
            in_use = {c.attrs.get("Image") for c in self.client.containers.list(all=True)}
        except ENGINE_ERRORS as exc:
            log.warning("image collection failed", extra={"action": "gc_images", "error": str(exc)})
            return []
        used = self._use_times()
        images.sort(key=lambda i: _last_use(i, used), reverse=True)
        removed: list[str] = []
        for image in images[self.config.keep_images :]:
            if image.id in in_use:
                continue
            try:
                self.client.images.remove(image.id, force=False)
            except ENGINE_ERRORS:
                continue
            removed.extend(image.tags)
        if removed:
            log.info("images removed", extra={"action": "gc_images", "images": removed})
        return removed

    def _use_file(self) -> Path | None:
        return self.config.state_dir / "docker-images.json" if self.config.state_dir else None

    def _use_times(self) -> dict[str, float]:
        path = self._use_file()
        try:
            data = json.loads(path.read_text()) if path else {}
        except (OSError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.items()}

    def record_use(self, tag: str, at: float | None = None) -> None:
        """Remember when a run last started from this image (the collector keeps the most
        recently used ones)."""
        path = self._use_file()
        if path is None:
            return
        with self._guard:
            used = self._use_times()
            used[tag] = time.time() if at is None else at
            rundir.write_json(path, dict(sorted(used.items())))

    # runs ---------------------------------------------------------------------------------
    @staticmethod
    def container_name(run_id: str) -> str:
        return f"dockyard-run-{run_id}"

    def start(self, plan: RunPlan) -> None:
        if plan.launch_args is None:
            raise Unavailable("the docker executor does not prepare runs ahead of their tick")
        work = plan.run_dir / rundir.WORK
        (work / "scratch").mkdir(parents=True, exist_ok=True)
        plan.var.mkdir(parents=True, exist_ok=True)
        user = self._user(plan, work)
        name = self.container_name(plan.run_id)
        command = ["python", "-u", IN_CONTAINER["shim"], "launch", plan.launcher, *plan.launch_args]
        self.client.containers.run(
            self.image_tag(plan.env),
            command,
            name=name,
            detach=True,
            init=True,
            labels={**plan.labels, **self._server_label()},
            environment=self._environment(plan),
            working_dir=IN_CONTAINER["code"],
            user=user,
            volumes=self._run_volumes(plan, work),
            network_mode=self.config.network,
            ports={f"{p}/tcp": ("127.0.0.1", p) for p in plan.ports},
            **_limits(plan.instance),
        )
        rundir.write_json(plan.run_dir / rundir.SPEC, {"executor": "docker", "container": name})
        self._secrets(plan.run_dir)  # read while the run's configuration is there
        self._follow(plan.run_id, plan.run_dir)
        self.record_use(self.image_tag(plan.env))

    def _user(self, plan: RunPlan, work: Path) -> str:
        """The workspace's own uid when the server is root (as on the local executor), with
        the run's folders made its; else the server's uid."""
        uid = (
            sandbox.workspace_user(self.config.uid_base, plan.workspace_id)
            if self.config.uid_base is not None
            else None
        )
        if uid is None:
            return self.config.user
        sandbox.give_all((plan.settings, plan.code, plan.var, work), uid)
        return f"{uid}:{uid}"

    def _server_label(self) -> dict[str, str]:
        return {SERVER_LABEL: self.server_id} if self.server_id is not None else {}

    def _run_volumes(self, plan: RunPlan, work: Path) -> dict[str, dict[str, str]]:
        volumes = {
            str(plan.code): {"bind": IN_CONTAINER["code"], "mode": "ro"},
            str(plan.settings): {"bind": IN_CONTAINER["settings"], "mode": "ro"},
            str(plan.var): {"bind": IN_CONTAINER["var"], "mode": "rw"},
            str(work): {"bind": IN_CONTAINER["work"], "mode": "rw"},
            str(SHIM): {"bind": IN_CONTAINER["shim"], "mode": "ro"},
        }
        volumes.update(self._ca_volume())
        return volumes

    def _environment(self, plan: RunPlan) -> dict[str, str]:
        env = dict(self._network_environment())
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
                "RUNTIME__DLTHUB_DSN": f"{self.beacon_url}/beacon/{plan.beacon_token}",
            }
        )
        return env

    def launched(self, run_dir: Path) -> bool:
        return rundir.launched(run_dir)

    def poll(self, run_dir: Path) -> ExitStatus | None:
        ended = rundir.read_exit(run_dir)
        if ended is not None:
            return ended
        run_id = run_dir.name
        try:
            container = self.client.containers.get(self.container_name(run_id))
        except NotFound:
            return self._lost(run_dir)
        except ENGINE_ERRORS:
            self._engine_lost()
            return self._engine_away(run_dir)
        self._away_since = None
        state = container.attrs["State"]
        if state.get("Status") in ("created", "running", "restarting", "paused"):
            self._follow(run_id, run_dir)  # adopted after a restart: attach to its output
            return None
        return self._collect(container, run_dir, state)

    def _engine_away(self, run_dir: Path) -> ExitStatus | None:
        """The engine cannot be asked about the run: wait for it (the run goes on, or its
        end and its last lines are read once the engine is back), up to ENGINE_GIVE_UP_S."""
        away = time.time() - (self._away_since or time.time())
        if away < ENGINE_GIVE_UP_S:
            return None
        stopped = run_dir / rundir.ENGINE_STOP
        if stopped.exists():
            reason = json.loads(stopped.read_text())["reason"] + "; its last lines are missing"
        else:
            where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            reason = f"lost: the docker engine at {where} was unreachable for {away:.0f} s"
        rundir.write_exit(run_dir, ExitStatus(None, None, reason), None)
        return ExitStatus(None, None, reason)

    def _collect(self, container: Any, run_dir: Path, state: dict[str, Any]) -> ExitStatus | None:
        """The container ended: finish reading its output, record the exit, remove it."""
        code = int(state.get("ExitCode", -1))
        error = "out of memory" if state.get("OOMKilled") else None
        stopped = run_dir / rundir.ENGINE_STOP
        if stopped.exists():
            error = str(json.loads(stopped.read_text())["reason"])
        elif error is None and code > 128 and not (run_dir / rundir.SIGNALLED).exists():
            error = self._outside_stop(code - 128, state.get("FinishedAt"))
            if error is not None and self._away_since is not None:
                # the engine is going down with it: read its last lines once it is back
                stopped.write_text(json.dumps({"reason": error}))
                return None
        self._follow(run_dir.name, run_dir)
        for thread in self._followers.pop(run_dir.name, []):
            thread.join(timeout=10)
        with self._guard:
            self._redact.pop(run_dir.name, None)
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

    def _outside_stop(self, signum: int, finished_at: str | None) -> str | None:
        """Why a container ended by a signal dockyard did not send: the engine stopping
        (dockerd stops its containers when it shuts down), else None (`docker kill` or
        `docker stop` by someone: the signal is the reason)."""
        ended = _epoch(finished_at) or time.time()
        near = any(ended - 5 <= t <= ended + OUTAGE_WINDOW_S for t in self._outages)
        if not near:
            # the container's death may be the first sign of the engine shutting down:
            # its socket closes right away, its event stream only after the containers
            time.sleep(0.3)
            try:
                probe = self._client_factory()
                probe.ping()
                probe.close()
            except ENGINE_ERRORS:
                self._engine_lost()
                near = True
        if not near:
            return None
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"the docker engine stopped or restarted during the run (the container got {name})"

    def _engine_lost(self) -> None:
        now = time.time()
        with self._guard:
            if self._away_since is None:
                self._away_since = now
            if not self._outages or now - self._outages[-1] > 1.0:
                self._outages.append(now)
                del self._outages[:-20]
        self._client = None

    def sweep(self) -> list[str]:
        """Remove the containers of runs whose end is already recorded (left behind when
        the engine went away while their logs were being collected)."""
        removed: list[str] = []
        runs_dir = self.config.runs_dir
        if runs_dir is None:
            return removed
        try:
            found = self.client.containers.list(all=True, filters={"label": "dockyard.run_id"})
            for container in found:  # a running one whose run ended: it must not go on unseen
                run_id = container.labels.get("dockyard.run_id", "")
                if run_id and rundir.ended(runs_dir / run_id):
                    container.remove(force=True)
                    removed.append(run_id)
        except ENGINE_ERRORS as exc:
            log.warning("container sweep failed", extra={"action": "sweep", "error": str(exc)})
        return removed

    def _lost(self, run_dir: Path) -> ExitStatus:
        reason = "lost: the run's container is gone (removed, or the docker engine lost it)"
        rundir.write_exit(run_dir, ExitStatus(None, None, reason), None)
        return ExitStatus(None, None, reason)

    def signal(self, run_dir: Path, signum: int) -> bool:
        with (run_dir / rundir.SIGNALLED).open("a") as marker:  # its end is then ours, not outside
            marker.write(f"{signum}\n")
        try:
            self.client.containers.get(self.container_name(run_dir.name)).kill(signal=signum)
        except ENGINE_ERRORS:
            return False
        return True

    def on_exit(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        threading.Thread(target=self._watch_events, name="docker-events", daemon=True).start()

    def _watch_events(self) -> None:
        """Docker's event stream: wake the runner the moment a run's container dies. When
        the engine goes away the stream is re-opened with a growing pause (up to 30 s)."""
        filters = {"type": "container", "event": ["die", "oom"], "label": "dockyard.run_id"}
        pause, lost = 1.0, False
        while True:
            try:
                stream = self.client.events(decode=True, filters=filters)
                if lost:
                    log.info("docker engine is back", extra={"action": "docker_events"})
                    self._away_since = None
                    self.sweep()
                    self._wake()  # anything may have ended while the stream was down
                pause, lost = 1.0, False
                for _event in stream:
                    self._wake()
                error = "the event stream ended"
            except ENGINE_ERRORS as exc:
                error = str(exc)
            if not lost:
                log.warning(
                    "docker event stream lost; reconnecting",
                    extra={"action": "docker_events", "error": error},
                )
                self._engine_lost()
                self._wake()
            lost = True
            time.sleep(pause)
            pause = min(5.0, pause * 2)

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        return False

    def held_unreleased(self, run_dir: Path) -> bool:
        return False

    # logs -------------------------------------------------------------------------------
    def _follow(self, run_id: str, run_dir: Path) -> None:
        """Stream the container's stdout and stderr into the run log (once per run; after a
        restart it resumes after the last line already in the log)."""
        with self._guard:
            if run_id in self._followers and run_id not in self._broken:
                return
            self._broken.discard(run_id)  # a broken stream resumes after its last line
            threads = [
                threading.Thread(
                    target=self._pump,
                    args=(run_id, run_dir, stream),
                    name=f"logs-{run_id[:8]}-{stream}",
                    daemon=True,
                )
                for stream in ("out", "err")
            ]
            self._followers[run_id] = threads
        for thread in threads:
            thread.start()

    def _pump(self, run_id: str, run_dir: Path, stream: str) -> None:
        """Copy one stream of the container's output into the run log. With timestamps,
        Docker sends one message per line, or per 16 KiB fragment of a longer one, each
        `<RFC 3339 time> <text>`: the time is taken off every message (a line gets its last
        fragment's), the texts go through the splitter, which joins the fragments."""
        since = logs.last_time(run_dir, stream)
        kwargs: dict[str, Any] = {
            "stdout": stream == "out",
            "stderr": stream == "err",
            "stream": True,
            "follow": True,
            "timestamps": True,
        }
        if since is not None:
            kwargs["since"] = datetime.fromisoformat(since)
        stamp: str | None = None

        def write(text: str) -> None:
            if since is not None and stamp is not None and stamp <= since:
                return  # already in the log before the restart
            logs.append(run_dir, stream, text, stamp)

        lines = loglines.LineSplitter(write, loglines.Redactor(self._secrets(run_dir)))
        try:
            container = self.client.containers.get(self.container_name(run_id))
            for message in container.logs(**kwargs):
                stamp, text = _message(message, stamp)
                lines.feed(text)
            lines.close()  # a last line without a newline
        except ENGINE_ERRORS as exc:  # an unfinished line is read again on resuming
            with self._guard:
                self._broken.add(run_id)
            log.warning(
                "log stream broke",
                extra={"action": "container_logs", "run_id": run_id, "error": str(exc)},
            )

    def _secrets(self, run_dir: Path) -> list[str]:
        """The run's secret values (kept while it runs: its configuration is removed at
        its end, possibly before the last lines are written)."""
        with self._guard:
            if run_dir.name not in self._redact:
                self._redact[run_dir.name] = logs.redactions(run_dir)
            return self._redact[run_dir.name]


def _message(message: bytes, last: str | None) -> tuple[str | None, bytes]:
    """A Docker log message with timestamps as (its time, ISO; its text)."""
    head, _, text = message.partition(b" ")
    at = _iso(head.decode("ascii", "replace")) if len(head) <= 40 else None
    return (at, text) if at is not None else (last, message)


def _iso(docker_time: str) -> str | None:
    """Docker's RFC 3339 nanosecond timestamps as ISO 8601 with microseconds, UTC."""
    try:
        head, _, frac = docker_time.rstrip("Z").partition(".")
        moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
        micros = int((frac + "000000")[:6]) if frac else 0
        return moment.replace(microsecond=micros).isoformat()
    except ValueError:
        return None


def _epoch(docker_time: str | None) -> float | None:
    at = _iso(docker_time) if docker_time else None
    return datetime.fromisoformat(at).timestamp() if at else None


def _last_use(image: Any, used: dict[str, float]) -> float:
    """When a run last started from this image, else when it was built."""
    built = _epoch(image.attrs.get("Created")) or 0.0
    return max([built, *(used.get(tag, 0.0) for tag in image.tags)])


def _limits(instance: dict[str, Any]) -> dict[str, Any]:
    size = instance.get("size")
    if size not in SIZES:
        return {}
    cpus, memory = SIZES[size]
    # no swap on top of the memory limit: over it, the kernel's OOM killer ends the run
    return {"nano_cpus": int(cpus * 1e9), "mem_limit": memory, "memswap_limit": memory}


def uv_cache_dir() -> Path:
    """The controller's uv cache, shared with image builds (so they reuse its downloads)."""
    import subprocess

    out = subprocess.run([envs.uv_bin(), "cache", "dir"], capture_output=True, text=True)
    path = Path(out.stdout.strip() or Path.home() / ".cache" / "uv")
    path.mkdir(parents=True, exist_ok=True)
    return path
