"""The local side of a deploy: find the workspace's Python, run dlt's worker there, check
the files. The CLI never imports workspace code itself; the shim does, in the workspace's
own environment (`controller/inspection.py`, shared with the server's deploy from git).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dockyard.cli.config import cache_dir
from dockyard.controller import inspection
from dockyard.controller.inspection import DEPLOYMENT_FILE, Inspection
from dockyard.errors import InvalidInput
from dockyard.settings import DEFAULT_MAX_WORKSPACE_BYTES

__all__ = ["DEPLOYMENT_FILE", "Inspection"]


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


def build_env(root: Path) -> str:
    """An environment with the workspace's declared dependencies, built with uv, cached."""
    return inspection.build_env(root, cache_dir() / "envs")


@contextmanager
def inspect(root: Path, python: str, worker_args: list[str]) -> Iterator[Inspection]:
    """Stage the workspace's files and generate its manifest there (cleaned up on exit)."""
    with inspection.inspect(root, python, worker_args, cache_dir() / "shimlib") as seen:
        yield seen


def check_files(seen: Inspection, max_bytes: int | None = None) -> None:
    """Refuse escaping links and oversized workspaces."""
    limit = max_bytes or int(
        os.environ.get("DOCKYARD_MAX_WORKSPACE_BYTES", DEFAULT_MAX_WORKSPACE_BYTES)
    )
    inspection.check_files(seen, limit)


def configuration_files(root: Path) -> list[dict[str, Any]]:
    """The `.dlt` files dlt's `ConfigurationFileSelector` ships (no workspace code runs)."""
    from types import SimpleNamespace

    from dlt._workspace.deployment.file_selector import ConfigurationFileSelector

    context: Any = SimpleNamespace(run_dir=str(root), settings_dir=str(root / ".dlt"))
    return [
        {"path": f".dlt/{rel.as_posix()}", "size": path.stat().st_size, "link": None, "exec": False}
        for path, rel in ConfigurationFileSelector(context)
    ]
