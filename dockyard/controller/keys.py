"""Workspace keys: one age X25519 pair per workspace, its private half sealed at rest.

The server's master key is an age identity too: `DOCKYARD_MASTER_KEY`, else
`<data-dir>/master.key` (created with mode 0600 at first start, in `age-keygen`'s format, so
`age -d -i master.key` opens what it seals). Every workspace private key and fingerprint key
is stored in the database encrypted to the master key; losing the master key loses them, so
it is what an operator backs up (docs/secrets.md).

Retired keys stay: a run decrypts the configuration version it was created with, whatever
key that version was encrypted with. The key ids the pre-receive hook accepts are published
in the bare repository (`dockyard-keys.json`, public information only).
"""

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pyrage
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import crypto
from dockyard.clock import utcnow
from dockyard.controller.createonce import create_once
from dockyard.controller.store.models import Workspace, WorkspaceKey
from dockyard.errors import DockyardError, InvalidInput

MASTER_ENV = "DOCKYARD_MASTER_KEY"
MASTER_FILE = "master.key"
KEYS_FILE = "dockyard-keys.json"


@dataclass(frozen=True, slots=True)
class SealingKey:
    """What the CLI needs to encrypt for a workspace (no private key in it)."""

    public_key: str
    kid: str
    fp_key: bytes


def load_master(data_dir: Path) -> str:
    """The master identity: from the environment, else the key file (created if missing)."""
    value = os.environ.get(MASTER_ENV)
    source = MASTER_ENV
    if not value:
        path = data_dir / MASTER_FILE
        if not path.exists():
            _create_master_file(path)
        value = path.read_text()
        source = str(path)
    identity = next(
        (ln.strip() for ln in value.splitlines() if ln.strip() and not ln.startswith("#")), ""
    )
    try:
        pyrage.x25519.Identity.from_str(identity)
    except Exception:  # noqa: BLE001 — pyrage raises its own untyped errors
        raise InvalidInput(
            f"{source} does not hold an age secret key (AGE-SECRET-KEY-1…); restore it from"
            " your backup, or remove the file on a new server to create one"
        ) from None
    return identity


def _create_master_file(path: Path) -> None:
    identity = pyrage.x25519.Identity.generate()
    text = (
        f"# dockyard master key, created {utcnow().isoformat()}: back it up (docs/secrets.md)\n"
        f"# public key: {identity.to_public()}\n{identity}\n"
    )
    create_once(path, text.encode())


class Keyring:
    def __init__(self, master_identity: str, repos_dir: Path) -> None:
        self._master = pyrage.x25519.Identity.from_str(master_identity)
        self._recipient = self._master.to_public()
        self.repos_dir = repos_dir

    # sealing at rest --------------------------------------------------------------------
    def _seal(self, data: bytes) -> str:
        return base64.b64encode(pyrage.encrypt(data, [self._recipient])).decode()

    def _open(self, sealed: str) -> bytes:
        try:
            data: bytes = pyrage.decrypt(base64.b64decode(sealed), [self._master])
        except Exception:  # noqa: BLE001
            raise DockyardError(
                f"the master key cannot open this workspace's keys; start the server with the"
                f" master key it was set up with ({MASTER_ENV} or <data-dir>/{MASTER_FILE})"
            ) from None
        return data

    def seal(self, data: bytes) -> str:
        """`data` encrypted to the master key (base64 text to store): credentials and
        webhook secrets of GitHub links (controller/usecases/github.py)."""
        return self._seal(data)

    def unseal(self, sealed: str) -> bytes:
        """What `seal` sealed; refused with a one-line error under another master key."""
        return self._open(sealed)

    # keys ---------------------------------------------------------------------------------
    def ensure(self, session: Session, ws: Workspace) -> WorkspaceKey:
        """The workspace's current key, created (and published) when it has none."""
        current = self._current(session, ws)
        if current is None:
            current = self._new(session, ws)
            self.publish(session, ws)
        return current

    def _current(self, session: Session, ws: Workspace) -> WorkspaceKey | None:
        return session.scalar(
            select(WorkspaceKey).where(
                WorkspaceKey.workspace_id == ws.id, WorkspaceKey.retired_at.is_(None)
            )
        )

    def _new(self, session: Session, ws: Workspace) -> WorkspaceKey:
        identity, public = crypto.new_identity()
        row = WorkspaceKey(
            workspace_id=ws.id,
            kid=crypto.key_id(public),
            public_key=public,
            sealed_identity=self._seal(identity.encode()),
            sealed_fp_key=self._seal(secrets.token_bytes(32)),
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row

    def sealing_key(self, session: Session, ws: Workspace) -> SealingKey:
        row = self.ensure(session, ws)
        return SealingKey(row.public_key, row.kid, self._open(row.sealed_fp_key))

    def all_keys(self, session: Session, ws: Workspace) -> list[WorkspaceKey]:
        return list(
            session.scalars(
                select(WorkspaceKey)
                .where(WorkspaceKey.workspace_id == ws.id)
                .order_by(WorkspaceKey.id)
            )
        )

    def identities(self, session: Session, ws: Workspace) -> dict[str, str]:
        """kid → private key, current and retired (for decrypting any version)."""
        return {k.kid: self._open(k.sealed_identity).decode() for k in self.all_keys(session, ws)}

    def rotate(self, session: Session, ws: Workspace) -> tuple[WorkspaceKey, WorkspaceKey]:
        """Retire the current key and make a new one; returns (old, new). The caller
        re-encrypts the secrets in the same transaction's commit."""
        old = self.ensure(session, ws)
        old.retired_at = utcnow()
        session.flush()
        return old, self._new(session, ws)

    def publish(self, session: Session, ws: Workspace) -> None:
        """Tell the repository's pre-receive hook which key ids it accepts."""
        current = self._current(session, ws)
        record = {
            "current": current.kid if current else None,
            "retired": [k.kid for k in self.all_keys(session, ws) if k.retired_at is not None],
        }
        path = self.repos_dir / f"{ws.name}.git" / KEYS_FILE
        if path.parent.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)


def published(git_dir: Path) -> dict[str, object]:
    """The key ids a repository accepts (read by the pre-receive hook)."""
    try:
        data: dict[str, object] = json.loads((git_dir / KEYS_FILE).read_text())
    except (OSError, ValueError):
        return {"current": None, "retired": []}
    return data
