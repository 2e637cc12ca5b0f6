"""Real databases with real Alembic migrations (a SQLite file, and a fresh PostgreSQL
database: `database_url` in tests/conftest.py runs each test on both), real bare git
repositories, in tmp dirs."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.controller import gitstore
from dockyard.controller.store.db import Database
from tests.integration.helpers import Committer


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def bare_repo(tmp_path: Path) -> Any:
    return gitstore.init_bare(tmp_path / "repo.git")


@pytest.fixture
def committer(bare_repo: Any) -> Committer:
    return Committer(bare_repo)
