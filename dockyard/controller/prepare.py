"""Everything a run needs before its process starts: environment, code, configuration,
entry point and process environment. Nothing here imports workspace code.
"""

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from sqlalchemy.orm import object_session

from dockyard import crypto
from dockyard.controller import (
    dltadapter,
    envs,
    filelock,
    gitstore,
    keys,
    logs,
    retention_files,
    runlinks,
)
from dockyard.controller.executors.base import CODE_IN_CONTAINER, RunPlan
from dockyard.controller.executors.fleet import Fleet
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Job, Run, Workspace
from dockyard.errors import DockyardError
from dockyard.settings import Settings
from dockyard.shim import rundir

log = logging.getLogger(__name__)
REQUIREMENTS_CACHE = 256  # deployment versions whose requirements are kept in memory


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """What fixes a run's process environment (known before its row exists, for held runs)."""

    run_id: str
    profile: str | None
    deployment_version: str | None
    configuration_version: str | None

    @classmethod
    def of(cls, run: Run) -> "RunIdentity":
        return cls(run.id, run.profile, run.deployment_version, run.configuration_version)


def launch_args(run: Run, entry_point: dict[str, Any]) -> list[str]:
    """dlt's launcher command line (after the module name)."""
    return ["--run-id", run.id, "--trigger", run.trigger, "--entry-point", json.dumps(entry_point)]


@dataclass(frozen=True, slots=True)
class Prepared:
    plan: RunPlan
    entry_point: dict[str, Any]

    @property
    def env_key(self) -> str:
        return self.plan.env.key


class Preparer:
    def __init__(
        self,
        settings: Settings,
        executor: Fleet,
        beacon_secret: bytes,
        keyring: keys.Keyring | None = None,
        db: Database | None = None,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.beacon_secret = beacon_secret
        self.keyring = keyring
        self.db = db  # for the keys, read in a short session of their own
        self._checkout_lock = threading.Lock()
        # (workspace, sha) → requirements.json's bytes: a commit's content never changes
        self._requirements_cache: dict[tuple[str, str], bytes] = {}
        self._cache_lock = threading.Lock()

    def run_dir(self, run_id: str) -> Path:
        return self.settings.runs_dir / run_id

    def prepare(
        self, ws: Workspace, job: Job, run: Run, upstream: runlinks.Upstream | None = None
    ) -> Prepared:
        """Everything a run needs; its launch command starts the job at once. A follow-up is
        told about its `upstream` run (environment variables and dlt's `run_args`)."""
        requirements = self._requirements_of(ws, run.deployment_version)
        entry_point = self.entry_point(job, run, requirements, upstream)
        port = (entry_point.get("run_args") or {}).get("port")
        plan = self._plan(
            ws,
            job,
            RunIdentity.of(run),
            requirements,
            launch_args(run, entry_point),
            (int(port),) if port is not None else (),
            executor=run.executor,
            extra_env=upstream.environment(self.settings.base_url) if upstream else None,
        )
        return Prepared(plan, entry_point)

    def prepare_held(
        self, ws: Workspace, job: Job, identity: "RunIdentity", timeout_s: float
    ) -> Prepared:
        """A run prepared ahead of its tick: the process starts now, imports dlt and the
        launcher, and waits to be released with its launch arguments (`launch_args`)."""
        requirements = self._requirements_of(ws, identity.deployment_version)
        plan = self._plan(ws, job, identity, requirements, None, (), timeout_s, ws.executor)
        return Prepared(plan, {})

    def entry_point(
        self,
        job: Job,
        run: Run,
        requirements: dict[str, Any],
        upstream: runlinks.Upstream | None = None,
    ) -> dict[str, Any]:
        """dlt's entry point; an interactive job gets a free port (and no base path: it is
        served at `/` of an origin of its own), a follow-up its upstream run's fields."""
        run_args: dict[str, Any] | None = None
        if job.job_type == "interactive":
            run_args = {"port": free_port()}
        if upstream is not None:
            run_args = {**(run_args or {}), **upstream.run_args(self.settings.base_url)}
        return dltadapter.build_entry_point(
            job.definition,
            profile=run.profile,
            refresh=run.refresh,
            interval_start=run.interval_start,
            interval_end=run.interval_end,
            dlt_version=requirements["dlt_version"],
            run_args=run_args,
        )

    def build_envs(self, ws: Workspace, jobs: list[Job]) -> None:
        """Make sure the environments of these jobs at the deployed version exist: one
        `requirements.json` read, one build per distinct requirement set (server log only)."""
        if ws.deployment_version is None:
            return
        requirements = self.requirements(ws, ws.deployment_version)
        specs = {s.key: s for s in (envs.env_spec(requirements, j.definition) for j in jobs)}
        executor = self.executor.get(ws.executor)
        for spec in specs.values():
            try:
                if not executor.env_ready(spec):
                    executor.ensure_env(spec, lambda line: log.debug(line))
            except DockyardError as exc:  # the run that needs it will fail with the reason
                log.warning(
                    "environment prebuild failed",
                    extra={"action": "prebuild", "env": spec.key, "error": exc.message},
                )

    def env_ready(self, ws: Workspace, job: Job) -> bool:
        """Whether the job's environment at the deployed version exists already."""
        if ws.deployment_version is None:
            return False
        requirements = self.requirements(ws, ws.deployment_version)
        return self.executor.get(ws.executor).env_ready(envs.env_spec(requirements, job.definition))

    def requirements(self, ws: Workspace, sha: str) -> dict[str, Any]:
        """The deployment's `requirements.json` (a fresh dict each call: callers may change
        it). A commit never changes, so its bytes are kept for the next run of that version."""
        key = (ws.name, sha)
        data = self._requirements_cache.get(key)
        if data is None:
            repo = gitstore.open_repo(self.settings.repos_dir / f"{ws.name}.git")
            data = _requirements_bytes(repo, sha)
            with self._cache_lock:
                if len(self._requirements_cache) >= REQUIREMENTS_CACHE:
                    self._requirements_cache.pop(next(iter(self._requirements_cache)))
                self._requirements_cache[key] = data
        requirements: dict[str, Any] = json.loads(data)
        return requirements

    def _requirements_of(self, ws: Workspace, sha: str | None) -> dict[str, Any]:
        if sha is None:
            raise DockyardError("the run has no deployment version")
        return self.requirements(ws, sha)

    def _plan(
        self,
        ws: Workspace,
        job: Job,
        identity: "RunIdentity",
        requirements: dict[str, Any],
        args: list[str] | None,
        ports: tuple[int, ...],
        hold_timeout_s: float = 0.0,
        executor: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> RunPlan:
        run_dir = self.run_dir(identity.run_id)
        assert identity.deployment_version is not None
        spec = envs.env_spec(requirements, job.definition)
        placing = self.executor.get(executor)
        if not placing.env_ready(spec):
            logs.system(run_dir, f"preparing the run's environment ({placing.name})")
        placing.ensure_env(spec, lambda line: logs.system(run_dir, line))
        repo = gitstore.open_repo(self.settings.repos_dir / f"{ws.name}.git")
        code = self.checkout(repo, ws.name, identity.deployment_version)
        settings_dir = self.write_settings(
            repo,
            identity.configuration_version,
            run_dir,
            lambda: self._identities(ws),
            held_back=args is None,  # a held process gets its secrets at release
        )
        profile = identity.profile or "prod"
        return RunPlan(
            run_id=identity.run_id,
            run_dir=run_dir,
            env=spec,
            code=code,
            settings=settings_dir,
            var=self.settings.var_dir / ws.name / profile,
            launcher=str(job.definition["entry_point"]["launcher"]),
            launch_args=args,
            environment={
                **(extra_env or {}),
                "WORKSPACE__PROFILE": profile,
                "DOCKYARD_RUN_ID": identity.run_id,
                "DOCKYARD_WORKSPACE": ws.name,
            },
            beacon_token=_beacon_token(self.beacon_secret, identity.run_id),
            labels={
                "dockyard.workspace": ws.name,
                "dockyard.job_ref": job.job_ref,
                "dockyard.run_id": identity.run_id,
                "dockyard.deployment": identity.deployment_version,
            },
            instance=dict((job.definition.get("require") or {}).get("instance") or {}),
            ports=ports,
            hold_timeout_s=hold_timeout_s,
            executor=executor or self.executor.default,
            workspace_id=ws.id,
        )

    def cleanup(self, run_id: str) -> None:
        """The run's configuration copy is removed as soon as the run has ended."""
        _cleanup(self.run_dir(run_id))

    def code_roots(self, workspace: str, sha: str | None) -> list[str]:
        """Where a run of deployment `sha` ran its workspace's code from: the checkout (as
        given and resolved: the job's working folder is the resolved one) and the path a
        container sees it at. Tracebacks name files under one of them."""
        roots = [CODE_IN_CONTAINER]
        if sha:
            target = self.settings.checkouts_dir / workspace / sha
            roots += sorted({str(target), str(target.resolve())})
        return roots

    def checkout(self, repo: pygit2.Repository, workspace: str, sha: str) -> Path:
        """The deployment's code, checked out once per SHA and shared by its runs. Its
        modification time says when a run last took it (retention keeps what is in use)."""
        target = self.settings.checkouts_dir / workspace / sha
        with self._checkout_lock, filelock.held(lock_path(target)):  # threads, then processes
            if not target.exists():
                _place(repo, sha, target)
            os.utime(target)
        return target

    def retire_checkout(self, target: Path, unused_since: float) -> Path | None:
        """Move a checkout no run has taken since `unused_since` (POSIX time) out of the way,
        under the lock `checkout` takes, so a run preparing at this moment either took it
        just now (and it stays) or makes it again. Returns where it went, to be deleted."""
        with self._checkout_lock, filelock.held(lock_path(target)):
            try:
                if target.stat().st_mtime >= unused_since:
                    return None
            except FileNotFoundError:
                return None
            aside = retention_files.set_aside(target)
            filelock.remove(lock_path(target))
            return aside

    def _identities(self, ws: Workspace) -> dict[str, str]:
        """The workspace's private keys, read when a value must be decrypted (preparation
        runs outside any transaction: the keys get a short one of their own)."""
        if self.keyring is None:
            raise DockyardError("the server has no workspace keys to decrypt secrets with")
        session = object_session(ws)
        if session is not None:
            return self.keyring.identities(session, ws)
        if self.db is None:
            raise DockyardError("the server has no workspace keys to decrypt secrets with")
        with self.db.session() as own:
            current = own.get(Workspace, ws.id)
            assert current is not None
            return self.keyring.identities(own, current)

    def write_settings(
        self,
        repo: pygit2.Repository,
        sha: str | None,
        run_dir: Path,
        identities: Callable[[], Mapping[str, str]] = dict,
        held_back: bool = False,
    ) -> Path:
        """The run's own `.dlt` folder: configuration at its version, secrets decrypted,
        readable by the run only (removed when it ends). A value that cannot be decrypted
        refuses the run with the reason; nothing is left behind. `held_back`: without the
        secrets files and their redaction list (a held process waits, maybe minutes, for a
        run; `deliver_secrets` writes them when it is released)."""
        settings_dir = run_dir / rundir.SETTINGS
        settings_dir.mkdir(parents=True, mode=0o700)
        (settings_dir / ".workspace").touch()
        _write_private(settings_dir / ANONYMOUS_ID, _anonymous_id(repo).encode())
        if sha is None:
            return settings_dir
        if held_back:  # nothing is decrypted: the held process never sees a secret
            files = {
                n: d
                for n, d in gitstore.config_files(repo, sha).items()
                if not crypto.is_secret_file(n)
            }
        else:
            try:
                files = configuration(repo, sha, identities)
            except DockyardError:
                _cleanup(run_dir)
                raise
        for name, data in files.items():
            _write_private(settings_dir / name, data)
        return settings_dir

    def deliver_secrets(self, ws: Workspace, run_dir: Path, sha: str | None) -> bool:
        """A held process is released: its configuration's secrets files, decrypted, and
        their redaction list go into its `.dlt` folder now, owned like the folder (the
        workspace's user in the sandbox). False: the configuration has none. Raises (with
        the reason) when a value cannot be decrypted; nothing is written then."""
        if sha is None:
            return False
        repo = gitstore.open_repo(self.settings.repos_dir / f"{ws.name}.git")
        held_back = {
            n: d for n, d in gitstore.config_files(repo, sha).items() if crypto.is_secret_file(n)
        }
        if not held_back:
            return False
        files = opened(held_back, lambda: self._identities(ws))  # with their redaction list
        settings_dir = run_dir / rundir.SETTINGS
        owner = settings_dir.stat()
        for name, data in files.items():
            _write_private(settings_dir / name, data)
            if owner.st_uid != os.geteuid():
                os.chown(settings_dir / name, owner.st_uid, owner.st_gid)
        return True

    def worker_configuration(self, ws: Workspace, sha: str | None) -> dict[str, bytes]:
        """What `write_settings` would write, as files (name → bytes) for a worker host to
        write into its run's own `.dlt` folder: never stored here."""
        repo = gitstore.open_repo(self.settings.repos_dir / f"{ws.name}.git")
        files = {".workspace": b"", ANONYMOUS_ID: _anonymous_id(repo).encode()}
        if sha is not None:
            files.update(configuration(repo, sha, lambda: self._identities(ws)))
        return files


def configuration(
    repo: pygit2.Repository, sha: str, identities: Callable[[], Mapping[str, str]]
) -> dict[str, bytes]:
    """The configuration files at `sha`, secrets decrypted, plus the redaction list (the
    values a run's log must hide) when there are secrets: name → bytes."""
    return opened(gitstore.config_files(repo, sha), identities)


def opened(
    files: Mapping[str, bytes], identities: Callable[[], Mapping[str, str]]
) -> dict[str, bytes]:
    """Configuration files (name → bytes) with the secrets files decrypted, plus the
    redaction list when there are secrets."""
    clear, redact = crypto.open_files({f"config/{n}": d for n, d in files.items()}, identities)
    found = {name.removeprefix("config/"): data for name, data in clear.items()}
    if redact:
        found[logs.REDACT_FILE] = json.dumps(redact).encode()
    return found


# dlt's telemetry keeps an anonymous id in its global folder, which in a run is the run's own
# settings folder (`DLT_CONFIG_FOLDER`), read-only to the job: without the file dlt tries to
# write one at every pipeline step and logs a traceback each time, above the job's own output.
ANONYMOUS_ID = ".anonymous_id"


def _anonymous_id(repo: pygit2.Repository) -> str:
    """One id per workspace of this server (dlt's format: 32 hex digits), stable across
    runs so dlt's telemetry counts one workspace once; it names nothing."""
    return hashlib.sha256(f"dlt-anonymous-id:{Path(repo.path).resolve()}".encode()).hexdigest()[:32]


def free_port() -> int:
    """A TCP port nothing listens on right now (interactive jobs serve on it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _beacon_token(secret: bytes, run_id: str) -> str:
    from dockyard.controller import beacon

    return beacon.token_for(secret, run_id)


def _requirements_bytes(repo: pygit2.Repository, sha: str) -> bytes:
    data = gitstore.read_file(repo, sha, gitstore.REQUIREMENTS)
    if data is None:
        raise DockyardError(f"deployment {sha[:12]} has no requirements.json")
    return data


def _write_private(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _cleanup(run_dir: Path) -> None:
    """The run's decrypted configuration and its scratch folder (home, tmp)."""
    shutil.rmtree(run_dir / rundir.SETTINGS, ignore_errors=True)
    shutil.rmtree(run_dir / rundir.JOB, ignore_errors=True)


def lock_path(target: Path) -> Path:
    """The lock file of a checkout (or environment) folder: `.NAME.lock` beside it (retention
    skips dot-names)."""
    return target.with_name(f".{target.name}.lock")


def _place(repo: pygit2.Repository, sha: str, target: Path) -> None:
    """Check out into a name of this process's own, then rename it into place. Called under
    the checkout's file lock: temporary folders left by a process that died mid-checkout are
    removed first; a target that appeared anyway (a process without the lock) is used."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = filelock.unique_tmp(target)
    gitstore.checkout(repo, sha, gitstore.CODE, tmp)
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # the other one's is the same commit
