"""Generating a workspace's manifest without importing its code: the shim runs dlt's file
selectors and manifest worker in the workspace's own Python, on a staged copy of exactly the
files being deployed.

Shared by `dockyard deploy` on a laptop (`cli/workspace.py`: the workspace folder, the user's
cache) and by the server deploying a commit fetched from a git host (`controller/gitsource.py`:
a checkout of the commit, environments cached under the data dir), so both build the same
manifest, requirements and file list from the same files.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidInput, Unavailable
from dockyard.shim import SHIM

DEPLOYMENT_FILE = "__deployment__.py"
DLT_PIN = "dlt==1.31.0"
# how long the shim may take to select, stage and run dlt's manifest worker
INSPECT_TIMEOUT_S = 300.0

# (the shim's argv, its stage folder) → the argv that runs it, e.g. in a sandbox
Wrap = Callable[[list[str], Path], list[str]]
# (the shim's argv, its stage folder, its environment) → how it ended (stdout: the answer);
# raises subprocess.TimeoutExpired past INSPECT_TIMEOUT_S. Default: a child process.
Runner = Callable[[list[str], Path, dict[str, str]], subprocess.CompletedProcess[str]]


@dataclass(frozen=True, slots=True)
class Inspection:
    root: Path
    stage: Path
    files: list[dict[str, Any]]
    config: list[dict[str, Any]]
    manifest: dict[str, Any]
    warnings: list[str]
    requirements: dict[str, Any]
    ad_hoc: bool


MAX_WHERE = 300


def requirement_lines(root: Path) -> list[str]:
    """The workspace's declared dependencies: pyproject.toml, else requirements.txt/.in."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text()).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"pyproject.toml is not valid TOML: {exc}") from None
        return [str(d) for d in project.get("dependencies", [])]
    for name in ("requirements.txt", "requirements.in"):
        path = root / name
        if path.is_file():
            return [
                ln.strip()
                for ln in path.read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")
            ]
    return []


def env_key(lines: list[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(lines)).encode()).hexdigest()[:24]


def build_env(root: Path, envs_dir: Path) -> str:
    """An environment with the workspace's declared dependencies (dlt pinned when it declares
    none), built with uv, cached in `envs_dir` by the set of requirements."""
    lines = declared(root)
    target = envs_dir / env_key(lines)
    python = target / "bin" / "python"
    if (target / ".ready").exists():
        return str(python)
    uv = uv_bin()
    if target.exists():
        shutil.rmtree(target)
    _run([uv, "venv", "--quiet", "-p", sys.executable, str(target)])
    _run([uv, "pip", "install", "--quiet", "-p", str(python), *lines])
    (target / ".ready").touch()
    return str(python)


def declared(root: Path) -> list[str]:
    """What an environment for the workspace holds: its declared dependencies, and dlt pinned
    when it declares none."""
    from packaging.requirements import InvalidRequirement, Requirement

    lines = requirement_lines(root)
    names = set()
    for line in lines:
        try:
            names.add(Requirement(line).name.lower())
        except InvalidRequirement:
            continue
    if "dlt" not in names:
        lines.append(DLT_PIN)
    return lines


def uv_bin() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise Unavailable("building the workspace environment failed: " + " | ".join(tail))


@contextmanager
def inspect(
    root: Path,
    python: str,
    worker_args: list[str],
    shimlib_dir: Path,
    wrap: Wrap | None = None,
    env: dict[str, str] | None = None,
    run: Runner | None = None,
) -> Iterator[Inspection]:
    """Stage the workspace's files and generate its manifest there (cleaned up on exit).
    `env` is the shim's environment (default: this process's); `wrap` may put it in a
    sandbox, `run` somewhere else than a child process (a container)."""
    with tempfile.TemporaryDirectory(prefix="dockyard-stage-") as tmp:
        stage = Path(tmp)
        shim_env = dict(os.environ if env is None else env)
        shim_env["PATH"] = f"{Path(uv_bin()).parent}:{shim_env.get('PATH', '/usr/bin:/bin')}"
        shim_env["DOCKYARD_SHIM_PATHS"] = pathspec_home(shimlib_dir)
        argv = [python, str(SHIM), "inspect", str(root), str(stage), *worker_args]
        try:
            if run is not None:
                proc = run(argv, stage, shim_env)
            else:
                proc = subprocess.run(
                    argv if wrap is None else wrap(argv, stage),
                    capture_output=True,
                    text=True,
                    env=shim_env,
                    cwd=root,
                    timeout=INSPECT_TIMEOUT_S,
                )
        except subprocess.TimeoutExpired:
            raise InvalidInput(
                f"generating the manifest took longer than {INSPECT_TIMEOUT_S:.0f}s; does"
                " importing the workspace's modules do work at import time?"
            ) from None
        payload = parse(proc)
        worker = payload["worker"]
        yield Inspection(
            root=root,
            stage=stage,
            files=payload["files"],
            config=payload["config"],
            manifest=worker["manifest"],
            warnings=list(worker.get("warnings", [])),
            requirements=payload["requirements"],
            ad_hoc="--no-use-all" in worker_args,
        )


def pathspec_home(shimlib_dir: Path) -> str:
    """A folder holding only a copy of dockyard's `pathspec`, which dlt's file selector needs
    and plain dlt does not install (copied so nothing else of dockyard's leaks in)."""
    import pathspec

    source = Path(pathspec.__file__).parent
    home = shimlib_dir / f"pathspec-{pathspec.__version__}"
    if not (home / "pathspec").exists():
        tmp = home.with_name(home.name + f".{os.getpid()}.tmp")
        shutil.copytree(source, tmp / "pathspec", ignore=shutil.ignore_patterns("__pycache__"))
        try:
            os.replace(tmp, home)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another deploy got there first
    return str(home)


def parse(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The shim's answer, or the one-line reason dlt's worker gave."""
    try:
        payload: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise InvalidInput(
            f"generating the manifest failed in the workspace's Python: {tail[0]}"
        ) from None
    worker = payload.get("worker") or {}
    if "error" in worker:
        where = f"{_line(worker['where'])}: " if worker.get("where") else ""
        raise InvalidInput(
            f"generating the manifest failed: {where}{worker.get('error_type')}: {worker['error']}"
        )
    return payload


def _line(text: object) -> str:
    """Text from the workspace's Python as one bounded line."""
    return " ".join(str(text).split())[:MAX_WHERE]


def check_files(inspection: Inspection, max_bytes: int) -> None:
    """Refuse escaping links and oversized workspaces."""
    for entry in inspection.files:
        link = entry.get("link")
        if link is not None and not _inside(entry["path"], link):
            raise InvalidInput(
                f"{entry['path']} is a symlink to {link}, outside the workspace;"
                " replace it with the file itself or add it to .gitignore"
            )
    total = sum(int(e["size"]) for e in inspection.files + inspection.config)
    if total > max_bytes:
        raise InvalidInput(
            f"the workspace is {total / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit;"
            " add data files to .gitignore or set DOCKYARD_MAX_WORKSPACE_BYTES"
        )


def _inside(path: str, link: str) -> bool:
    import posixpath

    if link.startswith("/"):
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
    return not (resolved == ".." or resolved.startswith("../"))
