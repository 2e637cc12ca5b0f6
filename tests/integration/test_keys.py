"""Workspace keys against a real database and real age crypto."""

import stat
import threading
from pathlib import Path

import pyrage
import pytest

from dockyard import crypto
from dockyard.clock import utcnow
from dockyard.controller import beacon, keys
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Workspace, WorkspaceKey
from dockyard.errors import DockyardError, InvalidInput


def workspace(db: Database, name: str = "ws") -> int:
    with db.session() as session:
        ws = Workspace(name=name, created_at=utcnow())
        session.add(ws)
        session.flush()
        return ws.id


def test_the_master_key_file_is_created_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(keys.MASTER_ENV, raising=False)
    first = keys.load_master(tmp_path)
    path = tmp_path / keys.MASTER_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.startswith("AGE-SECRET-KEY-1") and keys.load_master(tmp_path) == first
    assert "# public key: age1" in path.read_text()  # age-keygen's format


def test_the_environment_wins_and_a_bad_key_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = str(pyrage.x25519.Identity.generate())
    monkeypatch.setenv(keys.MASTER_ENV, mine)
    assert keys.load_master(tmp_path) == mine
    assert not (tmp_path / keys.MASTER_FILE).exists()
    monkeypatch.setenv(keys.MASTER_ENV, "not-a-key")
    with pytest.raises(InvalidInput, match="DOCKYARD_MASTER_KEY does not hold an age secret"):
        keys.load_master(tmp_path)


def test_keys_are_sealed_at_rest_and_rotation_keeps_the_old_one(
    db: Database, tmp_path: Path
) -> None:
    master = str(pyrage.x25519.Identity.generate())
    ring = keys.Keyring(master, tmp_path)
    (tmp_path / "ws.git").mkdir()
    workspace(db)
    with db.session() as session:
        ws = session.query(Workspace).one()
        sealing_key = ring.sealing_key(session, ws)
        row = session.query(WorkspaceKey).one()
        identity = ring.identities(session, ws)[sealing_key.kid]
    assert "AGE-SECRET-KEY" not in row.sealed_identity  # only the sealed form is stored
    assert keys.published(tmp_path / "ws.git") == {"current": sealing_key.kid, "retired": []}
    token = crypto.encrypt_value(
        ("a",), "v", public_key=sealing_key.public_key, recovery=None, fp_key=sealing_key.fp_key
    )
    with db.session() as session:
        ws = session.query(Workspace).one()
        old, new = ring.rotate(session, ws)
        ring.publish(session, ws)
        both = ring.identities(session, ws)
    assert old.kid == sealing_key.kid and set(both) == {old.kid, new.kid}
    assert both[old.kid] == identity
    assert crypto.decrypt_value(("a",), token, both) == "v"  # older versions stay readable
    assert keys.published(tmp_path / "ws.git") == {"current": new.kid, "retired": [old.kid]}

    other = keys.Keyring(str(pyrage.x25519.Identity.generate()), tmp_path)
    with db.session() as session, pytest.raises(DockyardError, match="master key cannot open"):
        other.identities(session, session.query(Workspace).one())


def test_servers_starting_together_on_one_data_dir_agree_on_one_master_and_beacon_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several servers may share a data dir (one database, several controllers): the keys
    made on first start are linked into place whole, so every starter reads the same one."""
    monkeypatch.delenv(keys.MASTER_ENV, raising=False)
    masters: list[str] = []
    secrets: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        masters.append(keys.load_master(tmp_path))
        secrets.append(beacon.load_secret(tmp_path / "beacon.key"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(masters) == 8 and len(set(masters)) == 1
    assert len(secrets) == 8 and len(set(secrets)) == 1 and len(secrets[0]) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beacon.key", keys.MASTER_FILE]
    assert stat.S_IMODE((tmp_path / "beacon.key").stat().st_mode) == 0o600
