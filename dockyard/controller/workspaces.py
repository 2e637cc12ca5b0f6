"""Workspaces: a name, a bare git repository and the rows that mirror its reconciled state."""

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pygit2
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import utcnow
from dockyard.controller import gitstore
from dockyard.controller.store.models import Workspace
from dockyard.errors import Conflict, InvalidInput, NotFound

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DLTHUB_NAMESPACE = uuid.UUID("6f1d3a52-4c8e-5b7a-9e21-d0c4a7f3b9e1")
"""The namespace of the UUIDs the `dlthub` CLI knows dockyard's rows by (`compat/dlthub/ids`);
fixed for good: changing it changes every id a user has configured."""


def dlthub_id(ws_id: int, name: str) -> str:
    """The workspace's id for the `dlthub` CLI (`RUNTIME__WORKSPACE_ID`): a uuid5 of its
    row id and name, so one made again under an old name is another workspace there too."""
    return str(uuid.uuid5(DLTHUB_NAMESPACE, f"workspace\x1f{ws_id}\x1f{name}"))


def repo_path(repos_dir: Path, name: str) -> Path:
    return repos_dir / f"{name}.git"


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid workspace name {name!r}; use lower-case letters, digits, '-' and '_'"
            " (at most 63, starting with a letter or digit)"
        )


def get(session: Session, name: str, for_update: bool = False) -> Workspace:
    """The workspace row; `for_update` locks it to the end of the transaction on PostgreSQL
    (SQLite has one writer at a time and compiles the lock away)."""
    query = select(Workspace).where(Workspace.name == name)
    row = session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise NotFound(
            f"no workspace {name!r} on this server; `dockyard workspace list` shows them,"
            " `dockyard workspace create` makes one"
        )
    return row


def create(
    session: Session, repos_dir: Path, name: str, hooks: Callable[[pygit2.Repository], None]
) -> Workspace:
    check_name(name)
    if session.scalar(select(Workspace.id).where(Workspace.name == name)) is not None:
        raise Conflict(f"workspace {name!r} already exists")
    path = repo_path(repos_dir, name)
    if not path.exists():
        repos_dir.mkdir(parents=True, exist_ok=True)
        repo = gitstore.init_bare(path)
        hooks(repo)
    row = Workspace(name=name, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def list_all(session: Session) -> list[Workspace]:
    return list(session.scalars(select(Workspace).order_by(Workspace.name)))


class HookInstaller:
    """Writes the repository's pre-receive hook, which runs dockyard's push validation."""

    def __init__(self, python: str, max_bytes: int, max_push_bytes: int | None = None) -> None:
        self.python = python
        self.max_bytes = max_bytes
        self.max_push_bytes = max_push_bytes or 4 * max_bytes

    def __call__(self, repo: pygit2.Repository) -> None:
        # git itself stops reading a pack stream over the limit (also one inflated from a
        # gzip request body, which the HTTP body cap cannot see)
        repo.config["receive.maxInputSize"] = self.max_push_bytes
        hook = Path(repo.path) / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(
            "#!/bin/sh\n"
            f"DOCKYARD_MAX_WORKSPACE_BYTES={self.max_bytes} "
            f"DOCKYARD_MAX_PUSH_BYTES={self.max_push_bytes} "
            f"exec '{self.python}' -m dockyard.controller.prereceive\n"
        )
        hook.chmod(0o700)  # the server runs it; nobody else needs to
