"""Read a server's database on either engine, for tests that look behind the API: the rows
of a table, or everything stored as text (no secret may appear in it in clear)."""

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from tests.conftest import Server


def url_of(server: "Server") -> str:
    """The database a test server uses: its `DOCKYARD_DB`, else the SQLite file it makes."""
    return server.extra_env.get("DOCKYARD_DB") or f"sqlite:///{server.data_dir / 'dockyard.db'}"


def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def dump(url: str) -> str:
    """Every row of every table as text (SQLite: its own dump; PostgreSQL: each row cast to
    text), so a test can assert a value is nowhere in the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                raw = conn.connection.dbapi_connection
                assert raw is not None
                return "\n".join(raw.iterdump())
            tables = sa.inspect(conn).get_table_names()
            assert tables, f"no tables in {engine.url!r}"
            return "\n".join(
                str(value)
                for table in tables
                for value in conn.execute(sa.text(f'SELECT t::text FROM "{table}" t')).scalars()
            )
    finally:
        engine.dispose()
