"""The local side of a deploy: find the workspace's Python, run dlt's worker there, check
the files. The CLI never imports workspace code itself; the shim does, in the workspace's
own environment.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.cli.config import cache_dir
from dockyard.errors import InvalidInput, Unavailable
from dockyard.settings import DEFAULT_MAX_WORKSPACE_BYTES
from dockyard.shim import SHIM

DEPLOYMENT_FILE = "__deployment__.py"
DLT_PIN = "dlt==1.31.0"


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


def deployment_target(root: Path, script: str | None) -> tuple[list[str], bool]:
    """Worker arguments for a full deploy (`__deployment__`) or an ad-hoc script."""
    if script is None:
        if not (root / DEPLOYMENT_FILE).exists():
            raise InvalidInput(
                f"no {DEPLOYMENT_FILE} in {root}; write one that declares jobs with"
                " `from dlt.hub import run`, or deploy one script with `dockyard launch script.py`"
            )
        return ["__deployment__"], False
    path = (Path.cwd() / script).resolve()
    if not path.is_file():
        raise InvalidInput(f"script {script} not found")
    if root not in path.parents:
        raise InvalidInput(f"script {script} is outside the workspace {root}")
    return [path.relative_to(root).as_posix(), "--no-use-all"], True


def find_python(root: Path, explicit: str | None) -> str:
    """`--python`, then the active virtualenv, then `<workspace>/.venv`, else a built one."""
    if explicit:
        if not Path(explicit).exists():
            raise InvalidInput(f"--python {explicit} does not exist")
        return explicit
    active = os.environ.get("VIRTUAL_ENV")
    if active and (Path(active) / "bin" / "python").exists() and _has_dlt(Path(active)):
        return str(Path(active) / "bin" / "python")
    local = root / ".venv" / "bin" / "python"
    if local.exists():
        return str(local)
    return build_env(root)


def _has_dlt(venv: Path) -> bool:
    return any(venv.glob("lib/python*/site-packages/dlt/__init__.py"))


def _requirement_lines(root: Path) -> list[str]:
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        import tomllib

        project = tomllib.loads(pyproject.read_text()).get("project", {})
        return [str(d) for d in project.get("dependencies", [])]
    for name in ("requirements.txt", "requirements.in"):
        path = root / name
        if path.exists():
            return [
                ln.strip()
                for ln in path.read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")
            ]
    return []


def build_env(root: Path) -> str:
    """An environment with the workspace's declared dependencies, built with uv, cached."""
    from packaging.requirements import InvalidRequirement, Requirement

    lines = _requirement_lines(root)
    names = set()
    for line in lines:
        try:
            names.add(Requirement(line).name.lower())
        except InvalidRequirement:
            continue
    if "dlt" not in names:
        lines.append(DLT_PIN)
    key = hashlib.sha256(json.dumps(sorted(lines)).encode()).hexdigest()[:24]
    target = cache_dir() / "envs" / key
    python = target / "bin" / "python"
    if (target / ".ready").exists():
        return str(python)
    from uv import find_uv_bin

    uv = str(find_uv_bin())
    if target.exists():
        shutil.rmtree(target)
    _run([uv, "venv", "--quiet", "-p", sys.executable, str(target)])
    _run([uv, "pip", "install", "--quiet", "-p", str(python), *lines])
    (target / ".ready").touch()
    return str(python)


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise Unavailable("building the workspace environment failed: " + " | ".join(tail))


@contextmanager
def inspect(root: Path, python: str, worker_args: list[str]) -> Iterator[Inspection]:
    """Stage the workspace's files and generate its manifest there (cleaned up on exit)."""
    with tempfile.TemporaryDirectory(prefix="dockyard-stage-") as tmp:
        stage = Path(tmp)
        env = dict(os.environ)
        from uv import find_uv_bin

        env["PATH"] = f"{Path(find_uv_bin()).parent}:{env.get('PATH', '')}"
        env["DOCKYARD_SHIM_PATHS"] = _pathspec_home()
        proc = subprocess.run(
            [python, str(SHIM), "inspect", str(root), str(stage), *worker_args],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
        )
        payload = _parse(proc)
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


def _pathspec_home() -> str:
    """A folder holding only a copy of dockyard's `pathspec`, which dlt's file selector needs
    and plain dlt does not install (copied so nothing else of dockyard's leaks in)."""
    import pathspec

    source = Path(pathspec.__file__).parent
    home = cache_dir() / "shimlib" / f"pathspec-{pathspec.__version__}"
    if not (home / "pathspec").exists():
        tmp = home.with_name(home.name + f".{os.getpid()}.tmp")
        shutil.copytree(source, tmp / "pathspec", ignore=shutil.ignore_patterns("__pycache__"))
        try:
            os.replace(tmp, home)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another deploy got there first
    return str(home)


def _parse(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise InvalidInput(
            f"generating the manifest failed in the workspace's Python: {tail[0]}"
        ) from None
    worker = payload.get("worker") or {}
    if "error" in worker:
        raise InvalidInput(
            f"generating the manifest failed: {worker.get('error_type')}: {worker['error']}"
        )
    return payload


def check_files(inspection: Inspection, max_bytes: int | None = None) -> None:
    """Refuse escaping links and oversized workspaces."""
    limit = max_bytes or int(
        os.environ.get("DOCKYARD_MAX_WORKSPACE_BYTES", DEFAULT_MAX_WORKSPACE_BYTES)
    )
    for entry in inspection.files:
        link = entry.get("link")
        if link is not None and not _inside(entry["path"], link):
            raise InvalidInput(
                f"{entry['path']} is a symlink to {link}, outside the workspace;"
                " replace it with the file itself or add it to .gitignore"
            )
    total = sum(int(e["size"]) for e in inspection.files + inspection.config)
    if total > limit:
        raise InvalidInput(
            f"the workspace is {total / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit;"
            " add data files to .gitignore or set DOCKYARD_MAX_WORKSPACE_BYTES"
        )


def configuration_files(root: Path) -> list[dict[str, Any]]:
    """The `.dlt` files dlt's `ConfigurationFileSelector` ships (no workspace code runs)."""
    from types import SimpleNamespace

    from dlt._workspace.deployment.file_selector import ConfigurationFileSelector

    context: Any = SimpleNamespace(run_dir=str(root), settings_dir=str(root / ".dlt"))
    return [
        {"path": f".dlt/{rel.as_posix()}", "size": path.stat().st_size, "link": None, "exec": False}
        for path, rel in ConfigurationFileSelector(context)
    ]


def _inside(path: str, link: str) -> bool:
    import posixpath

    if link.startswith("/"):
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
    return not (resolved == ".." or resolved.startswith("../"))
