"""The worker agent: one process per host, pulling batch runs from the server.

Three loops: a heartbeat thread (every `heartbeat_s`: alive, with the runs it holds; the
answer says which to signal and which were given up on), a claim loop (a long poll whenever
slots are free; each claimed run is prepared on a thread of its own: code, environment,
configuration, start) and a watch loop (every `WATCH_S`: ship each run's new log lines, and
report the exit once its process has ended).

Secrets reach this host only as the run's settings folder (0700, files 0600), fetched after
the environment is built and removed as soon as the run ends or is given up on. A restarted
worker (same name, same data dir) adopts the runs its state files name that the server says
it still holds, and kills the others. SIGTERM/Ctrl-C stops claiming and exits, leaving its
runs running for a restart to adopt.
"""

import base64
import logging
import os
import shutil
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockyard.controller import envs, logs
from dockyard.controller.executors.base import Executor, RunPlan
from dockyard.controller.executors.local import LocalExecutor
from dockyard.errors import DockyardError
from dockyard.shim import rundir
from dockyard.worker import state as st
from dockyard.worker.client import Refused, WorkerClient
from dockyard.worker.code import CodeCache

log = logging.getLogger(__name__)
WATCH_S = 0.3
CLAIM_WAIT_S = 20.0
SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class Options:
    server: str
    token: str
    name: str = field(default_factory=socket.gethostname)
    pool: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    executor: str = "local"
    slots: int = 2
    nice: int = 10  # runs and environment builds yield the CPU to the agent (heartbeats)
    data_dir: Path = field(default_factory=lambda: Path.home() / ".local/share/dockyard-worker")


@dataclass
class Held:
    """A run this worker holds, while it prepares, runs and reports."""

    state: st.RunState
    run_dir: Path
    code_roots: list[str] = field(default_factory=list)
    stop: str | None = None  # a stop asked for before the process started
    done: bool = False


class Agent:
    def __init__(self, options: Options, executor: Executor | None = None) -> None:
        self.options = options
        data = options.data_dir
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runs_dir = data / "runs"
        self.var_dir = data / "var"
        self.client = WorkerClient(options.server, options.token)
        self.code = CodeCache(data, options.server, options.token)
        self.states = st.StateDir(data / "state")
        self.executor = executor or make_executor(options)
        self.incarnation: int | None = None
        self.heartbeat_s = 5.0
        self.held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.fenced = False

    # lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        """Register, adopt, then claim and watch until stopped."""
        self.register()
        self.adopt()
        threads = [
            threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True),
            threading.Thread(target=self._watch_loop, name="watch", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self._claim_loop()
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(timeout=5)
            self._leave()
            self.client.close()

    def _leave(self) -> None:
        """Tell the server this is a clean stop (listed `stopped`, not lost); one try only:
        an unreachable server sees the silence as lost, which ends the same way."""
        if self.incarnation is None or self.fenced:
            return  # never registered, or the name is another process's now
        self.client.attempts = 1
        try:
            self.client.post("/leave", {"name": self.options.name, "incarnation": self.incarnation})
        except (DockyardError, Refused) as exc:
            log.warning(
                "could not say goodbye", extra={"action": "worker_leave", "error": str(exc)}
            )

    def register(self) -> None:
        o = self.options
        answer = self.client.post(
            "/register",
            {
                "name": o.name,
                "pool": o.pool,
                "labels": o.labels,
                "executor": o.executor,
                "slots": o.slots,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )
        self.incarnation = int(answer["incarnation"])
        self.heartbeat_s = float(answer["heartbeat_s"])
        log.info(
            "worker registered",
            extra={"action": "worker_register", "node": o.name, "incarnation": self.incarnation},
        )

    def adopt(self) -> None:
        """After a restart: the runs of the state files the server says this worker still
        holds are watched again; the others are killed and forgotten. A run whose process
        never started cannot be resumed: it is reported as ended with the reason."""
        for state in self.states.load_all():
            held = Held(state, self.runs_dir / state.run_id)
            held.code_roots = self._roots(state)
            with self._lock:
                self.held[state.run_id] = held
        self.beat()
        for held in self._snapshot():
            if not held.state.launched or not self.executor.launched(held.run_dir):
                self._report_exit(held, None, None, "the worker restarted before the run started")

    def _roots(self, state: st.RunState) -> list[str]:
        target = self.code.checkouts / state.workspace / state.sha
        return sorted({str(target), str(target.resolve())})

    def _snapshot(self) -> list[Held]:
        with self._lock:
            return [h for h in self.held.values() if not h.done]

    # heartbeat ---------------------------------------------------------------------------
    def _heartbeats(self) -> None:
        while not self.stopping.wait(self.heartbeat_s):
            try:
                self.beat()
            except Refused as exc:
                if exc.code == "stale_incarnation":
                    log.error(exc.message, extra={"action": "worker_fenced"})
                    self.fenced = True
                    self.stopping.set()
                    return
                log.warning(exc.message, extra={"action": "worker_heartbeat"})
            except DockyardError as exc:
                log.warning(exc.message, extra={"action": "worker_heartbeat"})

    def beat(self) -> None:
        with self._lock:  # every run it holds, up to its reported exit
            running = [
                {"run_id": h.state.run_id, "epoch": h.state.epoch} for h in self.held.values()
            ]
        answer = self.client.post(
            "/heartbeat",
            {"name": self.options.name, "incarnation": self.incarnation, "running": running},
        )
        for stop in answer.get("stop", []):
            self._signal(str(stop["run_id"]), str(stop["signal"]), str(stop["reason"]))
        for run_id in answer.get("given_up", []):
            self._give_up(str(run_id))

    def _signal(self, run_id: str, which: str, reason: str) -> None:
        with self._lock:
            held = self.held.get(run_id)
        if held is None:
            return
        if not self.executor.launched(held.run_dir):
            held.stop = reason  # still preparing: it never starts
            return
        if self.executor.signal(held.run_dir, SIGNALS.get(which, signal.SIGTERM)):
            logs.system(held.run_dir, f"stopping ({reason}): SIG{which}")

    def _give_up(self, run_id: str, held: Held | None = None) -> None:
        """The server ended this run while this worker was away: kill it, clean up."""
        with self._lock:
            held = self.held.pop(run_id, None) or held
        if held is None:
            return
        held.done = True
        if self.executor.launched(held.run_dir):
            self.executor.signal(held.run_dir, signal.SIGKILL)
        logs.system(held.run_dir, "this run was given up on by the server: SIGKILL")
        self._cleanup(held)
        log.warning("run given up on", extra={"action": "worker_given_up", "run_id": run_id})

    # claims ------------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.options.slots - len(self._snapshot()))

    def _claim_loop(self) -> None:
        while not self.stopping.is_set():
            free = self.free_slots()
            if free == 0:
                self.stopping.wait(WATCH_S)
                continue
            try:
                found = self.client.post(
                    "/claim",
                    {
                        "name": self.options.name,
                        "incarnation": self.incarnation,
                        "free_slots": free,
                        "wait_s": CLAIM_WAIT_S,
                    },
                )
            except DockyardError as exc:
                log.warning(exc.message, extra={"action": "worker_claim"})
                self.stopping.wait(1.0)
                continue
            for assignment in found:
                self._take(assignment)

    def _take(self, a: dict[str, Any]) -> None:
        state = st.RunState(str(a["run_id"]), int(a["epoch"]), str(a["workspace"]), str(a["sha"]))
        self.states.save(state)
        held = Held(state, self.runs_dir / state.run_id)
        with self._lock:
            self.held[state.run_id] = held
        thread = threading.Thread(
            target=self._start, args=(held, a), name=f"run-{state.run_id}", daemon=True
        )
        thread.start()

    def _start(self, held: Held, a: dict[str, Any]) -> None:
        try:
            self._prepare_and_start(held, a)
        except Refused as exc:
            if exc.status == 409:
                self._give_up(held.state.run_id, held)
            else:
                self._report_exit(held, None, None, f"could not start: {exc.message}")
        except DockyardError as exc:
            self._report_exit(held, None, None, exc.message)
        except Exception as exc:  # a run must end with a reason, whatever went wrong
            log.exception("run start failed", extra={"action": "worker_start"})
            self._report_exit(held, None, None, f"could not start: {exc!r}")

    def _prepare_and_start(self, held: Held, a: dict[str, Any]) -> None:
        run_dir, state = held.run_dir, held.state
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        logs.system(run_dir, f"preparing on worker {self.options.name}")
        code = self.code.checkout(state.workspace, str(a["git_path"]), state.sha)
        held.code_roots = self._roots(state)
        spec = envs.env_spec(a["requirements"], a["definition"])
        if not self.executor.env_ready(spec):
            logs.system(run_dir, f"preparing the run's environment ({self.executor.name})")
        self.executor.ensure_env(spec, lambda line: logs.system(run_dir, line))
        if held.stop is not None:
            self._report_exit(held, None, None, "cancelled before it started")
            return
        settings_dir = self._write_config(held)
        plan = RunPlan(
            run_id=state.run_id,
            run_dir=run_dir,
            env=spec,
            code=code,
            settings=settings_dir,
            var=self.var_dir / state.workspace / str(a.get("profile") or "prod"),
            launcher=str(a["launcher"]),
            launch_args=[str(x) for x in a["launch_args"]],
            environment={str(k): str(v) for k, v in a["environment"].items()},
            beacon_token=str(a["beacon_token"]),
            labels={str(k): str(v) for k, v in a["labels"].items()},
            instance=dict(a.get("instance") or {}),
            executor=self.executor.name,
        )
        logs.system(run_dir, f"starting {plan.launcher}")
        self.executor.start(plan)
        held.state = st.RunState(**{**_fields(state), "launched": True})
        self.states.save(held.state)
        self.client.post(
            f"/runs/{state.run_id}/started", {"name": self.options.name, "epoch": state.epoch}
        )

    def _write_config(self, held: Held) -> Path:
        """The run's own `.dlt` folder, from the server (readable by this user only)."""
        answer = self.client.get(
            f"/runs/{held.state.run_id}/config", name=self.options.name, epoch=held.state.epoch
        )
        settings_dir = held.run_dir / rundir.SETTINGS
        settings_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, encoded in answer["files"].items():
            target = (settings_dir / name).resolve()
            if not target.is_relative_to(settings_dir.resolve()):
                raise DockyardError(f"the server sent a configuration file outside the run: {name}")
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(encoded))
        return settings_dir

    # watching ----------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self.stopping.wait(WATCH_S):
            for held in self._snapshot():
                if not held.state.launched:
                    continue
                try:
                    self._watch(held)
                except Refused as exc:
                    if exc.status == 409 and exc.code != "log_gap":
                        self._give_up(held.state.run_id)
                except DockyardError as exc:
                    log.warning(exc.message, extra={"action": "worker_watch"})

    def _watch(self, held: Held) -> None:
        status = self.executor.poll(held.run_dir)
        self.ship(held)
        if status is not None:
            self.ship(held)
            self._report_exit(held, status.returncode, status.signal, status.error)

    def ship(self, held: Held) -> None:
        """The run's new complete log lines to the server, until it has them all."""
        while True:
            chunk = st.next_chunk(logs.path(held.run_dir), held.state.shipped)
            if not chunk:
                return
            body = {
                "name": self.options.name,
                "epoch": held.state.epoch,
                "offset": held.state.shipped,
                "data": chunk.decode("utf-8", errors="replace"),
            }
            try:
                answer = self.client.post(f"/runs/{held.state.run_id}/log", body)
                offset = int(answer["offset"])
            except Refused as exc:
                if exc.code != "log_gap":
                    raise
                offset = int(exc.body["expected"])
            held.state = held.state.with_shipped(offset)
            self.states.save(held.state)

    def _report_exit(
        self, held: Held, returncode: int | None, signum: int | None, error: str | None
    ) -> None:
        """Ship the rest of the log, then the exit; retried while the server is away (a
        worker stopping meanwhile keeps the run's state: its restart reports the exit)."""
        if held.done:
            return
        held.done = True
        body = {
            "name": self.options.name,
            "epoch": held.state.epoch,
            "returncode": returncode,
            "signal": signum,
            "error": error,
            "code_roots": held.code_roots,
        }
        while True:
            try:
                self.ship(held)
                self.client.post(f"/runs/{held.state.run_id}/exit", body)
                break
            except Refused as exc:  # given up on meanwhile: nothing more to report
                log.warning(exc.message, extra={"action": "worker_exit"})
                break
            except DockyardError as exc:
                log.warning(exc.message, extra={"action": "worker_exit"})
                if self.stopping.wait(1.0):
                    _remove_config(held.run_dir)  # the state stays: a restart reports it
                    return
        with self._lock:
            self.held.pop(held.state.run_id, None)
        self._cleanup(held)

    def _cleanup(self, held: Held) -> None:
        """The decrypted configuration and the job's scratch folder go; the state too."""
        _remove_config(held.run_dir)
        self.states.forget(held.state.run_id)


def _remove_config(run_dir: Path) -> None:
    shutil.rmtree(run_dir / rundir.SETTINGS, ignore_errors=True)
    shutil.rmtree(run_dir / rundir.JOB, ignore_errors=True)


def _fields(state: st.RunState) -> dict[str, Any]:
    return {f: getattr(state, f) for f in st.RunState.__dataclass_fields__}


def make_executor(options: Options) -> Executor:
    """The executor runs use on this host, with its caches in the worker's data dir."""
    data = options.data_dir
    if options.executor == "docker":
        return _docker(options)
    return LocalExecutor(data / "envs", options.server, data / "pycache", nice=options.nice)


def _docker(options: Options) -> Executor:
    """The Docker executor with this worker's data dir and the `DOCKYARD_DOCKER_*` settings.
    A container reaches the server at its URL; when that is this host's loopback (server and
    worker on one machine) at the server's port on the containers' gateway instead, where the
    server listens for beacons."""
    from dockyard.controller.executors.docker.executor import DockerExecutor
    from dockyard.settings import Settings

    settings = Settings.from_env(data_dir=options.data_dir, public_url=options.server)
    executor = DockerExecutor.from_settings(settings)
    url = urlsplit(options.server)
    executor.port = url.port if url.hostname in LOOPBACK_HOSTS else None
    return executor
