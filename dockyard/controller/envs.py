"""Virtual environments for runs: one per requirements hash, built with uv, shared.

The requirement set of a job is the workspace's default groups, plus the job's
`require.dependency_groups`, plus its launcher's requirements, with dlt pinned to exactly the
version the deployment was made with. Three packages dlt lists for every launcher are left
out: the commercial `dlthub` (dockyard's shim makes `from dlt.hub import run` work without it)
and `s3fs`/`botocore` (used by dlt only to upload run artifacts to a bucket, which dockyard does
not configure). A workspace that needs any of them lists it in its own dependencies.
"""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from dockyard.controller import dltadapter, filelock, retention_files
from dockyard.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)
READY = ".dockyard-ready"
LEFT_OUT = {"dlthub", "s3fs", "botocore"}

LineSink = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class EnvSpec:
    python_version: str
    requirements: tuple[str, ...]

    @property
    def key(self) -> str:
        text = json.dumps([self.python_version, sorted(self.requirements)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _name(spec: str) -> str | None:
    try:
        return str(canonicalize_name(Requirement(spec).name))
    except InvalidRequirement:
        return None


def env_spec(requirements: dict[str, Any], job_def: dict[str, Any]) -> EnvSpec:
    """What a job's environment must hold, from `requirements.json` and the job definition."""
    groups: dict[str, list[str]] = requirements.get("groups", {})
    wanted = list(requirements.get("default_groups", ["main"]))
    wanted += job_def.get("require", {}).get("dependency_groups", [])
    specs: list[str] = []
    for group in dict.fromkeys(wanted):
        if group not in groups:
            raise InvalidInput(
                f"job {job_def['job_ref']} needs dependency group {group!r}, which the"
                " workspace does not declare; add it to pyproject.toml [dependency-groups]"
            )
        specs += groups[group]
    launcher = job_def["entry_point"]["launcher"]
    specs += requirements.get("launcher_requirements", {}).get(launcher, [])
    # dlt exactly as deployed, keeping any extras the workspace asks for (`dlt[duckdb]`)
    extras = {e for s in specs if _name(s) == "dlt" for e in Requirement(s).extras}
    dlt_version = dict(requirements["dlt_version"])
    dlt_version["extras"] = sorted(extras | set(dlt_version.get("extras") or []))
    dlt_pin = dltadapter.dlt_requirement(dlt_version)
    kept = [s for s in dict.fromkeys(specs) if _name(s) not in LEFT_OUT | {"dlt"}]
    return EnvSpec(str(requirements.get("python_version", "")), (dlt_pin, *kept))


def find_python(version: str) -> str:
    """An interpreter of `major.minor` on this machine (uv cannot download one here)."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not version or version == current:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise Unavailable(
            f"the deployment needs Python {version}, which this server does not have;"
            f" install python{version} here or deploy from a Python {current} environment"
        )
    return found


def uv_bin() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


class EnvBuilder:
    def __init__(self, envs_dir: Path, nice: int = 0) -> None:
        self.envs_dir = envs_dir
        self.nice = nice  # builds yield the CPU to the scheduler and the API
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, spec: EnvSpec) -> Path:
        return self.envs_dir / spec.key

    def python(self, spec: EnvSpec) -> Path:
        return self.path(spec) / "bin" / "python"

    def is_ready(self, spec: EnvSpec) -> bool:
        return (self.path(spec) / READY).exists()

    def _lock_file(self, key: str) -> Path:
        """Across processes sharing the data directory (`.KEY.lock`; retention skips
        dot-names). Environments are built in place (a virtualenv cannot be moved), so the
        lock is what keeps two processes from building into one folder."""
        return self.envs_dir / f".{key}.lock"

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def ensure(self, spec: EnvSpec, sink: LineSink) -> Path:
        """Build the environment unless it exists; return its interpreter. The modification
        time of its ready marker says when a run last took it (for retention)."""
        with self._lock(spec.key), filelock.held(self._lock_file(spec.key)):
            if not self.is_ready(spec):  # another process may have built it meanwhile
                self._build(spec, sink)
            os.utime(self.path(spec) / READY)
        return self.python(spec)

    def retire(self, key: str, unused_since: float) -> Path | None:
        """Move environment `key` out of the way if no run has taken it since `unused_since`
        (POSIX time), under the lock `ensure` takes: a run preparing at this moment either
        took it just now (it stays) or builds it again. Returns where it went, to delete."""
        target = self.envs_dir / key
        with self._lock(key), filelock.held(self._lock_file(key)):
            marker = target / READY
            try:
                used = (marker if marker.exists() else target).stat().st_mtime
            except FileNotFoundError:
                return None
            if used >= unused_since:
                return None
            aside = retention_files.set_aside(target)
            filelock.remove(self._lock_file(key))
            return aside

    def _build(self, spec: EnvSpec, sink: LineSink) -> None:
        target = self.path(spec)
        if target.exists():
            shutil.rmtree(target)  # a half-built environment from an interrupted build
        target.parent.mkdir(parents=True, exist_ok=True)
        sink(
            f"building environment {spec.key} (Python {spec.python_version or 'default'},"
            f" {len(spec.requirements)} requirements)"
        )
        uv = uv_bin()
        python = find_python(spec.python_version)
        _run([uv, "venv", "--quiet", "-p", python, str(target)], sink, self.nice)
        install = [uv, "pip", "install", "-p", str(target / "bin" / "python"), *spec.requirements]
        _run(install, sink, self.nice)
        (target / READY).write_text(json.dumps({"requirements": list(spec.requirements)}))
        log.info("environment built", extra={"action": "build_env", "env": spec.key})


def _run(argv: list[str], sink: LineSink, nice: int = 0) -> None:
    nice_bin = shutil.which("nice") if nice else None
    if nice_bin:
        argv = [nice_bin, "-n", str(nice), *argv]
    # uv's own modes (public packages, 0755/0644, hardlinked from its cache), not the server's
    # umask 077: jobs of every workspace read them, through their sandbox only
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, umask=0o022
    )
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        sink(line.rstrip("\n"))
        tail = [*tail[-4:], line.strip()]
    if proc.wait() != 0:
        raise Unavailable("environment build failed: " + " | ".join(t for t in tail if t))
