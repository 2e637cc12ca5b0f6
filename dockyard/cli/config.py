"""Where the CLI keeps its login: `$XDG_CONFIG_HOME/dockyard/config.json`, mode 0600.

Flags win over environment (`DOCKYARD_SERVER`, `DOCKYARD_TOKEN`, `DOCKYARD_WORKSPACE`),
which wins over the saved file.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import InvalidInput

DEFAULT_WORKSPACE = "default"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dockyard" / "config.json"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dockyard"


def load_saved() -> dict[str, str]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        data: dict[str, str] = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidInput(
            f"{path} is not valid JSON; fix or delete it, then log in again"
        ) from exc
    return data


def save(data: dict[str, str]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True, slots=True)
class Target:
    server: str | None
    token: str | None
    workspace: str
    workspace_explicit: bool
    # named with `-w/--workspace` on this command line (not the environment or saved default):
    # only that may deploy a directory to another workspace than the one it records
    workspace_flag: bool = False


def resolve(
    server: str | None = None, token: str | None = None, workspace: str | None = None
) -> Target:
    saved = load_saved()
    explicit = workspace or os.environ.get("DOCKYARD_WORKSPACE")
    return Target(
        server=(server or os.environ.get("DOCKYARD_SERVER") or saved.get("server") or "").rstrip(
            "/"
        )
        or None,
        token=token or os.environ.get("DOCKYARD_TOKEN") or saved.get("token"),
        workspace=explicit or saved.get("workspace") or DEFAULT_WORKSPACE,
        workspace_explicit=bool(explicit),
        workspace_flag=bool(workspace),
    )
