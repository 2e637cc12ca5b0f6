"""Real SQLite files with real Alembic migrations, real bare git repositories, in tmp dirs."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.controller import gitstore
from dockyard.controller.store.db import Database
from tests.integration.helpers import Committer


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'dockyard.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def bare_repo(tmp_path: Path) -> Any:
    return gitstore.init_bare(tmp_path / "repo.git")


@pytest.fixture
def committer(bare_repo: Any) -> Committer:
    return Committer(bare_repo)
