"""`DOCKYARD_ADMIN_TOKEN` on a real database: the server starting with another value revokes
the one it replaces, and nothing else (issue 10, item 13)."""

import pytest
from sqlalchemy import select

from dockyard.controller import auth
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Token
from dockyard.errors import Unauthorized

A, B = "dy_env_token_a_0123456789", "dy_env_token_b_0123456789"


def start(db: Database, env_token: str | None) -> str | None:
    with db.session() as session:
        return auth.ensure_admin(session, env_token)


def valid(db: Database, token: str) -> bool:
    with db.session() as session:
        try:
            auth.authenticate(session, token)
        except Unauthorized:
            return False
        return True


def test_another_env_token_revokes_the_one_it_replaces_only(db: Database) -> None:
    start(db, A)
    with db.session() as session:
        api_admin, _ = auth.create(session, "ops", "admin", None)
        named_like_env, _ = auth.create(session, auth.ENV_TOKEN_NAME, "admin", None)

    start(db, B)

    assert not valid(db, A)
    assert valid(db, B)
    assert valid(db, api_admin)
    assert valid(db, named_like_env)  # made through the API: its name does not matter


def test_the_same_env_token_again_changes_nothing(db: Database) -> None:
    start(db, A)
    start(db, A)
    assert valid(db, A)
    with db.session() as session:
        assert len(list(session.scalars(select(Token)))) == 1


def test_no_env_token_keeps_the_last_one_and_generates_none(db: Database) -> None:
    start(db, A)
    assert start(db, None) is None
    assert valid(db, A)


def test_a_revoked_env_token_stays_revoked(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    start(db, A)
    with db.session() as session:
        row = session.scalar(select(Token).where(Token.token_hash == auth.hash_token(A)))
        assert row is not None
        auth.revoke(session, row.id)
    start(db, A)
    assert not valid(db, A)
    assert "names a revoked token" in caplog.text


def test_going_back_to_an_earlier_env_token_does_not_revive_it(db: Database) -> None:
    start(db, A)
    start(db, B)
    start(db, A)
    assert not valid(db, A)
    assert valid(db, B)  # not replaced by a token that cannot be used: no lock-out
