"""Alembic migrations on a real SQLite file and a real PostgreSQL database give exactly the
schema the models declare (each test that takes `db` runs on both engines)."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError, StatementError

from dockyard.controller.store import db as store_db
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Base, Job, Workspace
from tests import pg

MODEL_TABLES = {
    "workspace",
    "token",
    "job",
    "reconciliation",
    "run",
    "beacon_payload",
    "schedule",
    "interval_window",
    "workspace_key",
    "public_link",
    "github_link",
    "github_delivery",
    "audit_event",
    "github_oidc_rule",
    "github_app",
    "alert_channel",
    "alert_delivery",
    "lease",
    "node",
}


def differences(database: Database, metadata: sa.MetaData) -> list[object]:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs: list[object] = compare_metadata(context, metadata)
    return diffs


def fresh(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_upgrade_head_on_a_fresh_file_equals_the_models(tmp_path: Path, engine: str) -> None:
    database = fresh(tmp_path) if engine == "sqlite" else Database(pg.cluster().fresh(False))
    try:
        database.migrate()

        assert differences(database, Base.metadata) == []
        tables = set(sa.inspect(database.engine).get_table_names())
        assert tables == MODEL_TABLES | {"alembic_version"}
    finally:
        database.dispose()


def test_the_comparison_would_see_a_model_change(db: Database) -> None:
    # guards the test above against comparing nothing with nothing
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["job"].append_column(sa.Column("priority", sa.Integer(), nullable=True))
    sa.Index("ix_job_status", changed.tables["job"].c.status)

    kinds = sorted(d[0] for d in differences(db, changed) if isinstance(d, tuple))

    assert kinds == ["add_column", "add_index"]


def test_the_database_is_at_the_newest_revision(db: Database) -> None:
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    scripts = ScriptDirectory.from_config(store_db.alembic_config(db.engine))

    assert current == scripts.get_current_head()
    assert current is not None


def test_migrating_twice_is_harmless(db: Database) -> None:
    db.migrate()

    assert differences(db, Base.metadata) == []


def test_downgrade_to_base_and_up_again(db: Database) -> None:
    command.downgrade(store_db.alembic_config(db.engine), "base")
    assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}

    db.migrate()

    assert differences(db, Base.metadata) == []


def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = fresh(tmp_path)
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def job_row(workspace_id: int) -> Job:
    now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    return Job(
        workspace_id=workspace_id,
        job_ref="jobs.__deployment__.hello",
        job_type="batch",
        status="active",
        definition={"job_ref": "jobs.__deployment__.hello"},
        fingerprint="0" * 64,
        created_sha="a" * 40,
        updated_sha="a" * 40,
        created_at=now,
        updated_at=now,
    )


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(job_row(workspace_id=999))


def test_a_job_ref_is_unique_per_workspace(db: Database) -> None:
    with db.session() as session:
        ws = Workspace(name="ws", created_at=datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
        session.add(ws)
        session.flush()
        session.add(job_row(ws.id))
        ws_id = ws.id

    with pytest.raises(IntegrityError), db.session() as session:
        session.add(job_row(ws_id))


def test_datetimes_come_back_as_the_same_instant_in_utc(db: Database) -> None:
    berlin = timezone(timedelta(hours=1))
    with db.session() as session:
        session.add(Workspace(name="ws", created_at=datetime(2026, 3, 4, 11, 30, tzinfo=berlin)))

    with db.session() as session:
        created = session.scalars(sa.select(Workspace.created_at)).one()

    assert created == datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
    assert created.tzinfo == UTC


def test_a_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db.session() as session:
        session.add(Workspace(name="ws", created_at=datetime(2026, 3, 4, 10, 30)))


def test_descriptive_text_longer_than_its_column_is_clipped_on_both_engines(db: Database) -> None:
    # SQLite would keep 400 characters in a VARCHAR(255), PostgreSQL refuse them
    with db.session() as session:
        ws = Workspace(name="ws", created_at=datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
        session.add(ws)
        session.flush()
        job = job_row(ws.id)
        job.paused_by = "p" * 400
        session.add(job)

    with db.session() as session:
        paused_by = session.scalars(sa.select(Job.paused_by)).one()

    assert paused_by == "p" * 127 + "…"


def test_an_integer_beyond_any_column_finds_nothing_on_both_engines(db: Database) -> None:
    # ids and run numbers arrive from URLs up to 2**63-1: not found, never a database error
    with db.session() as session:
        ws = Workspace(name="ws", created_at=datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
        session.add(ws)
        session.flush()
        session.add(job_row(ws.id))

    with db.session() as session:
        for value in (2**31, 2**63 - 1):
            assert session.get(Workspace, value) is None
            assert session.scalars(sa.select(Job).where(Job.workspace_id == value)).all() == []
            assert session.scalars(sa.select(Job).where(Job.id < value)).all() != []
