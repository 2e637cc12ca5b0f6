"""A real controller (no loops) with one deployed workspace, for tests that need runs in a
given state: a real SQLite file, a real bare repository, the real reconciler and lifecycle."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.clock import FakeClock, utcnow
from dockyard.controller import auth, gitstore, manifests, usecases, workspaces
from dockyard.controller.assembly import Controller
from dockyard.controller.lifecycle import RunStatus
from dockyard.controller.store.models import Run
from dockyard.settings import Settings
from tests.integration.helpers import Committer
from tests.unit import samples

WS = "yard"
ADMIN = auth.Principal(1, "admin", None)
TOKEN = "dy_yard_test_admin_token_0123456"


@dataclass
class Yard:
    ctl: Controller
    clock: FakeClock
    committer: Committer

    def deploy(self, source: bytes = b"x = 1\n", refs: tuple[str, ...] = (samples.HELLO,)) -> str:
        """Commit the sample jobs `refs` (`hello`) with this code and reconcile; the new SHA."""
        manifest = samples.manifest(*refs)
        sha = self.committer.commit(
            {
                gitstore.MANIFEST: manifests.dump_yaml(manifest).encode(),
                gitstore.REQUIREMENTS: json.dumps(samples.requirements()).encode(),
                "code/__deployment__.py": source,
            }
        )
        self.ctl.reconciler.reconcile(WS)
        return sha

    def trigger(self) -> str:
        made = usecases.runs.trigger(self.ctl, ADMIN, WS, ["hello"])["triggered"][0]
        return str(made["run_id"])

    def move(self, run_id: str, status: str) -> None:
        """Put a run in `status` along the lifecycle's legal moves (`running`, or an end)."""
        with self.ctl.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            self.ctl.lifecycle.advance(session, run, RunStatus(status), self.clock.now())

    def run(self, run_id: str) -> Run:
        with self.ctl.db.session() as session:
            run = session.get(Run, run_id)
            assert run is not None
            return run


def make_yard(data_dir: Path, **settings: Any) -> Iterator[Yard]:
    """The clock starts at the real time: file modification times are compared with it."""
    clock = FakeClock(utcnow())
    ctl = Controller(
        Settings(data_dir=data_dir, start_loops=False, admin_token=TOKEN, **settings), clock=clock
    )
    ctl.bootstrap()
    usecases.workspaces.create_workspace(ctl, ADMIN, WS)
    repo = gitstore.open_repo(workspaces.repo_path(ctl.settings.repos_dir, WS))
    yield Yard(ctl, clock, Committer(repo))
    ctl.db.dispose()
