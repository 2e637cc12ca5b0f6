"""Engine, sessions and migrations. Built from settings at start-up, never at import time.

Two engines: SQLite (the default, one file in the data dir) and PostgreSQL through psycopg 3
(`postgresql+psycopg://…`), which several servers may share. What differs between them lives
here: SQLite's pragmas; PostgreSQL's UTC session time zone, connections checked before use
(a restarted database must not fail the next request), and migrations serialised by an
advisory lock, so that servers starting together upgrade the schema once while the others wait
and then find it at head. A bad URL or an unreachable database is one line naming the fix;
the URL's password is never shown (`safe_url`).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine, Integer, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dockyard.errors import InvalidInput, Unavailable

MIGRATIONS = Path(__file__).with_name("migrations")
_AFTER_COMMIT = "dockyard.after_commit"
FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
# pg_advisory_lock key held while one server migrates ("dockyard" as an integer)
MIGRATION_LOCK = int.from_bytes(b"dockyard", "big") & 0x7FFF_FFFF_FFFF_FFFF
_POSTGRES_NAMES = ("postgresql", "postgres", "postgresql+psycopg")


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` after the unit of work `session` belongs to has committed."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on any error. What was
        registered with `after_commit` runs once the commit is done, never after a rollback."""
        with self._sessions() as session:
            with session.begin():
                yield session
            for callback in session.info.pop(_AFTER_COMMIT, ()):
                callback()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def migrate(self) -> None:
        """Upgrade to head; an unreachable database is one line naming what to check."""
        try:
            upgrade(self.engine)
        except OperationalError as exc:  # refused, unknown host or database, bad password
            raise Unavailable(
                f"cannot reach the database {safe_url(self.url)}: {_reason(exc, self.url)};"
                " check that it is running and the URL's host, port, user, password and"
                " database name (--db or DOCKYARD_DB)"
            ) from None

    def dispose(self) -> None:
        self.engine.dispose()


def parse_url(url: str) -> URL:
    """The URL as SQLAlchemy takes it: SQLite, or PostgreSQL through psycopg 3 (a bare
    `postgresql://` means psycopg 3 here; no other driver is installed)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(
            f"the database URL is not one (--db or DOCKYARD_DB): give {FORMS}"
        ) from None
    if parsed.drivername in _POSTGRES_NAMES:
        if not parsed.database:
            raise InvalidInput(f"the database URL {safe_url(url)} names no database: give {FORMS}")
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed
    raise InvalidInput(
        f"database {parsed.drivername!r} is not supported (--db or DOCKYARD_DB): give {FORMS}"
    )


def safe_url(url: str) -> str:
    """The URL to show or log: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed)
    engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def _postgres_engine(url: URL) -> Engine:
    """Datetimes are stored as naive UTC (`models.UTCDateTime`); the session time zone is
    UTC too, so that anything PostgreSQL computes (now(), casts) agrees with them. A dropped
    connection (the database restarted) is noticed before use and replaced."""
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"options": "-c timezone=UTC", "connect_timeout": 10},
    )
    # SQLAlchemy's psycopg dialect casts every Integer parameter to INTEGER (32 bits): a run
    # number or id up to 2**63-1 from a URL (valid on SQLite, and a plain "not found" there)
    # would fail the query. Uncast, psycopg sends the smallest integer type that holds the
    # value and PostgreSQL compares it with the column as it is.
    engine.dialect.colspecs = {**engine.dialect.colspecs, Integer: _UncastInteger}
    return engine


class _UncastInteger(Integer):
    render_bind_cast = False


def _reason(exc: DBAPIError, url: str) -> str:
    """The driver's first line, the password taken out should it quote the URL."""
    reason = " ".join(str(exc.orig).split()) if exc.orig is not None else type(exc).__name__
    password = make_url(url).password
    if password:
        reason = reason.replace(str(password), "***")
    return reason[:300]


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), "head")
        return
    # held on a connection of its own for the whole upgrade: a second server starting now
    # waits here, then finds the schema at head and upgrades nothing
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        _advisory(lock, "pg_advisory_lock")
        try:
            command.upgrade(alembic_config(engine), "head")
        finally:
            _advisory(lock, "pg_advisory_unlock")


def _advisory(conn: Connection, function: str) -> None:
    conn.execute(text(f"SELECT {function}(:key)"), {"key": MIGRATION_LOCK})
