"""Leases on a real database (the `db` fixture): two holders on one database, the guarded
statements' races, and the stale holder — paused past its expiry while another took the
lease — whose fenced write is refused with nothing of it committed."""

import itertools
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from dockyard.clock import FakeClock
from dockyard.controller import gitstore, leases, manifests, workspaces
from dockyard.controller.assembly import Sweeper
from dockyard.controller.leases import LeaseLost, Leases
from dockyard.controller.reconciler import Reconciler
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import Lease, Workspace
from tests.integration.helpers import Committer
from tests.integration.test_reconciler import CONFIG, NoHooks
from tests.unit import samples

START = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
NAME = leases.SWEEP


def pair(db: Database, clock: FakeClock) -> tuple[Leases, Leases]:
    return Leases(db, clock, "host-a:1:aa", 10.0), Leases(db, clock, "host-b:2:bb", 10.0)


def row(db: Database) -> tuple[str | None, int]:
    with db.session() as session:
        found = session.get(Lease, NAME)
        assert found is not None
        return found.holder, found.epoch


def unreconciled(db: Database, tmp_path: Path) -> tuple[Path, str]:
    """Workspace `demo` whose HEAD was committed with no reconcile: the sweep's work."""
    repos = tmp_path / "repos"
    with db.session() as session:
        workspaces.create(session, repos, "demo", NoHooks())
    committer = Committer(gitstore.open_repo(workspaces.repo_path(repos, "demo")))
    sha = committer.commit(
        {
            gitstore.MANIFEST: manifests.dump_yaml(samples.manifest(samples.HELLO)).encode(),
            gitstore.REQUIREMENTS: b'{"default": []}',
            "config/config.toml": CONFIG,
        }
    )
    return repos, sha


def test_one_holder_at_a_time_and_a_new_epoch_for_each_new_holder(db: Database) -> None:
    clock = FakeClock(START)
    a, b = pair(db, clock)

    assert a.hold(NAME, None) == 1  # the row is made
    assert b.hold(NAME, None) is None
    clock.advance(5)
    assert a.hold(NAME, 1) == 1  # renewed: same epoch, expiry moved to 15 s
    clock.advance(9)
    assert b.hold(NAME, None) is None  # 14 s: still A's
    clock.advance(1)
    assert b.hold(NAME, None) == 2  # expired: B takes it, epoch + 1
    assert row(db) == ("host-b:2:bb", 2)
    assert a.hold(NAME, 1) is None  # A's renewal of epoch 1 is refused
    assert a.release(NAME, 1) is False  # and so is its release
    assert row(db) == ("host-b:2:bb", 2)


def test_a_released_lease_is_taken_at_once_at_the_next_epoch(db: Database) -> None:
    clock = FakeClock(START)
    a, b = pair(db, clock)
    assert a.hold(NAME, None) == 1
    assert a.release(NAME, 1) is True
    assert row(db) == (None, 1)
    assert b.hold(NAME, None) == 2  # no wait for the expiry


def test_losing_the_insert_race_leaves_the_transaction_usable(db: Database) -> None:
    """Both saw no row; the second insert hits the primary key inside a savepoint, so the
    rest of its transaction goes on (PostgreSQL would otherwise abort it)."""
    clock = FakeClock(START)
    a, b = pair(db, clock)
    assert a.hold(NAME, None) == 1
    with db.session() as session:
        session.execute(sa.update(Workspace).values(name=Workspace.name))  # a write before
        assert b._insert(session, NAME, clock.now(), clock.now()) is None
        assert session.scalar(sa.select(sa.func.count()).select_from(Lease)) == 1
    assert row(db) == ("host-a:1:aa", 1)


def test_racing_holders_never_share_an_epoch(db: Database) -> None:
    """Each round the lease has expired and both ask at once (one renewing, one taking):
    exactly one wins each round and epochs go up by one per new holder."""
    clock = FakeClock(START)
    holders = pair(db, clock)
    mine: dict[int, int | None] = {0: None, 1: None}
    winners: list[tuple[int, int]] = []

    def ask(i: int, barrier: threading.Barrier, got: dict[int, int | None]) -> None:
        barrier.wait()
        got[i] = holders[i].hold(NAME, mine[i])

    for _ in range(15):
        clock.advance(11)
        got: dict[int, int | None] = {}
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=ask, args=(i, barrier, got)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [(i, e) for i, e in got.items() if e is not None]
        assert len(won) == 1, got
        winners.append(won[0])
        mine = dict(got)
    epochs = [e for _, e in winners]
    assert epochs == sorted(epochs)
    for (i, e), (j, f) in itertools.pairwise(winners):
        assert f == (e if j == i else e + 1)  # kept by its holder, or taken: + 1


def test_a_stale_holders_fenced_write_is_refused_and_nothing_of_it_commits(
    db: Database,
) -> None:
    clock = FakeClock(START)
    a, b = pair(db, clock)
    assert a.hold(NAME, None) == 1
    stale = leases.Fence(a, NAME, 1)
    clock.advance(30)  # A paused past its expiry (SIGSTOP, GC, a partition)
    assert b.hold(NAME, None) == 2

    for fence_first in (True, False):
        with pytest.raises(LeaseLost, match="no longer held by this server"), db.session() as s:
            if fence_first:
                stale(s)
            s.add(Workspace(name="stale-write", created_at=clock.now()))
            s.flush()
            if not fence_first:
                stale(s)
    with db.session() as session:
        assert session.scalar(sa.select(Workspace).where(Workspace.name == "stale-write")) is None
    with pytest.raises(LeaseLost):
        stale.check()

    fresh = leases.Fence(b, NAME, 2)
    with db.session() as session:
        fresh(session)
        session.add(Workspace(name="fenced-write", created_at=clock.now()))
    fresh.check()
    assert row(db) == ("host-b:2:bb", 2)  # the fence changes nothing of the lease


def test_a_stale_sweep_leaves_the_workspace_unreconciled_and_the_holders_sweep_applies(
    db: Database, tmp_path: Path
) -> None:
    repos, sha = unreconciled(db, tmp_path)
    clock = FakeClock(START)
    a, b = pair(db, clock)
    assert a.hold(NAME, None) == 1
    clock.advance(30)
    assert b.hold(NAME, None) == 2
    reconciler = Reconciler(db, repos, clock=clock)

    with pytest.raises(LeaseLost):
        reconciler.sweep(leases.Fence(a, NAME, 1))
    with db.session() as session:
        assert workspaces.get(session, "demo").reconciled_sha is None

    reconciler.sweep(leases.Fence(b, NAME, 2))
    with db.session() as session:
        assert workspaces.get(session, "demo").reconciled_sha == sha


def test_the_sweep_loop_skips_its_pass_without_the_lease(db: Database, tmp_path: Path) -> None:
    repos, sha = unreconciled(db, tmp_path)
    clock = FakeClock(START)
    a, b = pair(db, clock)
    guard = leases.Guard(a, NAME)
    loop = Sweeper(Reconciler(db, repos, clock=clock), 5.0, guard)
    assert b.hold(NAME, None) == 1
    guard.refresh()

    assert loop.step() == 5.0
    with db.session() as session:
        assert workspaces.get(session, "demo").reconciled_sha is None  # B's work

    assert b.release(NAME, 1)
    guard.refresh()
    loop.step()
    with db.session() as session:
        assert workspaces.get(session, "demo").reconciled_sha == sha


def test_the_keeper_takes_its_leases_at_start_and_releases_them_on_stop(db: Database) -> None:
    clock = FakeClock(START)
    a, b = pair(db, clock)
    keeper = leases.Keeper(a, renew_s=3600)
    sweep, retention = keeper.guard(leases.SWEEP), keeper.guard(leases.RETENTION)
    keeper.start()
    try:
        assert sweep.held() is not None and retention.held() is not None
        assert b.hold(leases.RETENTION, None) is None
    finally:
        keeper.stop()
    assert sweep.held() is None
    assert b.hold(leases.RETENTION, None) == 2  # released: taken at once
