"""What only PostgreSQL does: servers starting together migrate once (advisory lock), the
session time zone is UTC, a bad URL or an unreachable database is one line without the
password. The schema itself is compared with the models in test_migrations.py (both engines)."""

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from dockyard.controller.store import db as store_db
from dockyard.controller.store.db import Database
from dockyard.errors import InvalidInput, Unavailable
from tests import pg
from tests.conftest import base_env, require_postgres

MIGRATE = (
    "import sys; from dockyard.controller.store.db import Database; Database(sys.argv[1]).migrate()"
)


@pytest.fixture
def cluster() -> pg.Cluster:
    return require_postgres()


def test_servers_starting_together_migrate_one_database_once(cluster: pg.Cluster) -> None:
    url = cluster.fresh(migrated=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url],
            env=base_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=300)[0].decode() for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(store_db.alembic_config(database.engine))
        assert len(versions) == 1
        assert current == head.get_current_head()
        # exactly one process ran each migration: the others found head and did nothing
        assert sum("Running upgrade  -> 0001" in out for out in outputs) <= 1
    finally:
        database.dispose()
        cluster.drop(url)


def test_the_session_time_zone_is_utc(cluster: pg.Cluster) -> None:
    url = cluster.fresh()
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW TimeZone")).scalar() == "UTC"
    finally:
        database.dispose()
        cluster.drop(url)


def test_a_wrong_password_is_one_line_without_the_password(cluster: pg.Cluster) -> None:
    url = sa.make_url(cluster.url("no_such_database")).set(password="hunter2-secret")
    database = Database(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(Unavailable) as caught:
            database.migrate()
    finally:
        database.dispose()

    message = caught.value.message
    assert "hunter2-secret" not in message
    assert "no_such_database" in message
    assert "\n" not in message
    assert "DOCKYARD_DB" in message


@pytest.mark.parametrize("url", ["not a url", "mysql://u:p@h/d", "postgresql://u:hunter2-secret@h"])
def test_a_bad_url_names_the_forms_it_takes(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Database(url)

    assert "postgresql+psycopg://" in caught.value.message
    assert "hunter2-secret" not in caught.value.message


def test_the_server_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://dockyard:hunter2-secret@127.0.0.1:9/dockyard"
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "server", "--data-dir", str(tmp_path), "--db", url],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "error: cannot reach the database postgresql+psycopg://dockyard:***@"
    )
    assert proc.stderr.count("\n") == 1
    assert "hunter2-secret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
