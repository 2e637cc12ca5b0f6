"""Local process executor: each run is a supervised process group on this machine.

The supervisor (`dockyard/shim/supervisor.py`) is started in its own session and keeps all
state in the run directory, so runs survive a controller restart and are adopted from their
files; the controller never has to hold a pipe or a Popen object to know how a run ended.
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.controller import envs
from dockyard.controller.executors import releases, sandbox
from dockyard.controller.executors.base import ExitStatus, LineSink, RunPlan, RunSpec
from dockyard.errors import DockyardError
from dockyard.shim import LOOPBACK, SHIM, SUPERVISOR, rundir
from dockyard.shim.supervisor import start_ticks

LOST_AFTER_S = 30.0
READABLE = ".dockyard-readable"  # in an environment: every job's user may read it


PASSED_ENV = (
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "UV_CACHE_DIR",
    "UV_INDEX_URL",
)
"""The only parts of the controller's own environment a run sees (never its tokens)."""
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def app_environment(plan: RunPlan) -> dict[str, str]:
    """An app (a run with a port) listens on loopback only: `dockyard/shim/loopback` first on
    `PYTHONPATH`, whose `sitecustomize` maps wildcard binds (dlt's launchers pass `0.0.0.0`)
    to loopback in every Python process of the run. The proxy is its only way in."""
    if not plan.ports:
        return {}
    return {"PYTHONPATH": str(LOOPBACK)}


class LocalExecutor:
    name = "local"
    supports_held = True

    def __init__(
        self,
        envs_dir: Path | None = None,
        beacon_url: str = "",
        pycache: Path | None = None,
        isolation: sandbox.Isolation | None = None,
        nice: int = 0,
    ) -> None:
        # runs and builds at this niceness: under a burst the scheduler and the API keep
        # their share of the CPU (settings.run_nice)
        self.nice = nice
        self.builder = envs.EnvBuilder(envs_dir, nice) if envs_dir is not None else None
        self.beacon_url = beacon_url
        self.pycache = pycache  # one folder per workspace below it
        self.isolation = isolation or sandbox.Isolation("none", "not configured")
        self._children: dict[Path, subprocess.Popen[bytes]] = {}
        self._wake: Callable[[], None] = lambda: None
        self._releases: dict[Path, int] = {}

    def on_exit(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    # environments ----------------------------------------------------------------------
    def _envs(self) -> envs.EnvBuilder:
        if self.builder is None:
            raise DockyardError("this executor was made without an environments folder")
        return self.builder

    def env_ready(self, spec: envs.EnvSpec) -> bool:
        return self._envs().is_ready(spec)

    def ensure_env(self, spec: envs.EnvSpec, sink: LineSink) -> None:
        self._envs().ensure(spec, sink)
        self._readable(self._envs().path(spec))

    def _readable(self, env_dir: Path) -> None:
        """Every job's user may read an environment, nobody but the server writes it (once
        per environment; jobs reach it only through their sandbox's read-only mount)."""
        if not (env_dir / READABLE).exists():
            sandbox.readable(env_dir)
            (env_dir / READABLE).touch()

    # runs --------------------------------------------------------------------------------
    def start(self, plan: RunPlan) -> None:
        """The plan as a supervised process: the virtualenv's Python runs the shim, in the
        sandbox when this server has one."""
        python = self._envs().python(plan.env)
        job_dir = plan.run_dir / rundir.JOB
        if plan.launch_args is None:
            release = str(plan.run_dir / rundir.RELEASE)
            marker = str(job_dir / rundir.RELEASED)
            args = ["held", release, marker, plan.launcher, str(plan.hold_timeout_s)]
        else:
            args = ["launch", plan.launcher, *plan.launch_args]
        argv = [str(python), "-u", str(SHIM), *args]
        env = self._environment(plan, python, job_dir)
        self._make_folders(plan, job_dir, env)
        if self.isolation.isolated:
            view = self._view(plan, job_dir, env)
            argv = sandbox.command(self.isolation, view, argv, plan.workspace_id)
            env["TMPDIR"] = "/tmp"  # noqa: S108 - the run's own folder, mounted there
        self.spawn(
            RunSpec(
                plan.run_id,
                plan.run_dir,
                argv,
                plan.code,
                env,
                held=plan.held,
                sandboxed=self.isolation.isolated,
                uid=self._uid(plan),
            )
        )

    def _uid(self, plan: RunPlan) -> int | None:
        """The workspace's own user, when jobs run as one."""
        if not self.isolation.separate_users:
            return None
        return self.isolation.uid(plan.workspace_id or 0)

    def _environment(self, plan: RunPlan, python: Path, job_dir: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update(plan.environment)
        env.update(
            {
                "PATH": f"{python.parent}:{SYSTEM_PATH}",
                "VIRTUAL_ENV": str(python.parent.parent),
                "PYTHONUNBUFFERED": "1",
                "HOME": str(job_dir / "home"),
                "TMPDIR": str(job_dir / "tmp"),
                "DLT_CONFIG_FOLDER": str(plan.settings),
                "DLT_DATA_DIR": str(plan.var / "pipelines"),
                "DLT_LOCAL_DIR": str(plan.var / "local"),
                "RUNTIME__DLTHUB_DSN": f"{self.beacon_url}/beacon/{plan.beacon_token}",
            }
        )
        if self.nice:  # the shim nices its own session with it (dlt_shim._renice_session)
            env["DOCKYARD_RUN_NICE"] = str(self.nice)
        if self.pycache is not None:  # keeps checkouts clean; one folder per workspace
            workspace = plan.labels.get("dockyard.workspace", "_")
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache / workspace)
        env.update(app_environment(plan))
        return env

    def _make_folders(self, plan: RunPlan, job_dir: Path, env: dict[str, str]) -> None:
        """The run's scratch folder, its data folder and its pycache, owned by the
        workspace's user when jobs run as one (with its configuration and checkout)."""
        writable = [job_dir / "home", job_dir / "tmp", plan.var]
        if "PYTHONPYCACHEPREFIX" in env:
            writable.append(Path(env["PYTHONPYCACHEPREFIX"]))
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        uid = self._uid(plan)
        if uid is not None:
            sandbox.give_all((job_dir, plan.settings, *writable[2:], plan.code), uid)
        self._readable(self._envs().path(plan.env))

    def _view(self, plan: RunPlan, job_dir: Path, env: dict[str, str]) -> sandbox.View:
        env_dir = self._envs().path(plan.env)
        read_only = [env_dir, plan.code, plan.settings, SHIM.parent]
        home = sandbox.interpreter_home(env_dir)
        if home is not None:
            read_only.append(home)
        read_only += [p for p in _ca_files(env) if not _inside(p, read_only)]
        if plan.held:
            read_only.append(plan.run_dir / rundir.RELEASE)
        writable = [job_dir, plan.var]
        if "PYTHONPYCACHEPREFIX" in env:
            writable.append(Path(env["PYTHONPYCACHEPREFIX"]))
        return sandbox.View(tuple(read_only), tuple(writable), job_dir / "tmp", plan.code)

    def spawn(self, spec: RunSpec) -> None:
        """Start the supervisor for a process spec (argv, cwd, env) in the run directory."""
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        if spec.held:
            self._releases[spec.run_dir] = releases.open_fifo(spec.run_dir, spec.uid)
        rundir.write_json(
            spec.run_dir / rundir.SPEC,
            {
                "argv": spec.argv,
                "cwd": str(spec.cwd),
                "env": spec.env,
                "held": spec.held,
                "sandboxed": spec.sandboxed,
                "executor": "local",
                "nice": self.nice,
            },
        )
        with (spec.run_dir / rundir.SUPERVISOR_ERR).open("ab") as errors:
            self._children[spec.run_dir] = subprocess.Popen(
                [sys.executable, "-S", str(SUPERVISOR), str(spec.run_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
        child = self._children[spec.run_dir]
        threading.Thread(target=self._await, args=(child,), daemon=True).start()

    def _await(self, child: subprocess.Popen[bytes]) -> None:
        child.wait()
        self._wake()

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        fd = self._releases.get(run_dir)
        return fd is not None and releases.write(fd, payload)

    def held_unreleased(self, run_dir: Path) -> bool:
        return releases.unreleased(run_dir, rundir.JOB)

    def launched(self, run_dir: Path) -> bool:
        return rundir.launched(run_dir)

    def poll(self, run_dir: Path) -> ExitStatus | None:
        status = rundir.read_exit(run_dir)
        if status is not None:
            self._reap(run_dir)
            return status
        if self._supervisor_gone(run_dir):
            return ExitStatus(None, None, "lost: the run's supervisor ended without a status")
        return None

    def signal(self, run_dir: Path, signum: int) -> bool:
        proc = rundir.read_proc(run_dir)
        if proc is None or not _same_process(proc):
            return False
        try:
            os.killpg(int(proc["pgid"]), signum)
        except ProcessLookupError:
            return False
        return True

    def _reap(self, run_dir: Path) -> None:
        fd = self._releases.pop(run_dir, None)
        if fd is not None:
            os.close(fd)
        child = self._children.pop(run_dir, None)
        if child is not None:
            child.wait(timeout=10)

    def _supervisor_gone(self, run_dir: Path) -> bool:
        child = self._children.get(run_dir)
        if child is not None:
            if child.poll() is None:
                return False
            # exited: exit.json is written before the supervisor ends, so re-check it
            return not rundir.ended(run_dir)
        # adopted after a restart: the supervisor writes exit.json before it ends
        proc = rundir.read_proc(run_dir)
        if proc is not None:
            if "supervisor_pid" in proc and _same_process(
                {"pid": proc["supervisor_pid"], "ticks": proc["supervisor_ticks"]}
            ):
                return False
            return not rundir.ended(run_dir) and not _same_process(proc)
        spec = run_dir / rundir.SPEC
        return spec.exists() and _age(spec) > LOST_AFTER_S


def _ca_files(env: dict[str, str]) -> list[Path]:
    """CA bundles the server passes on (SSL_CERT_FILE …): the job must be able to read them."""
    names = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT")
    return [Path(env[n]).resolve() for n in names if n in env and Path(env[n]).exists()]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots) or sandbox.under(path, sandbox.SYSTEM)


def _same_process(proc: dict[str, Any]) -> bool:
    """The recorded pid still names the process we started (not a reused pid)."""
    ticks = start_ticks(int(proc["pid"]))
    return ticks is not None and ticks == proc.get("ticks")


def _age(path: Path) -> float:
    return time.time() - path.stat().st_mtime
