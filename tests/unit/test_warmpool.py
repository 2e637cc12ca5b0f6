"""The warm pool's pure rules (bounds, idle expiry, who leaves first) and its take: a held
process goes only to a run of its job at the same deployment, configuration and profile,
with a free slot, before its idle expiry; anything else is discarded and the run starts cold."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.clock import FakeClock
from dockyard.controller import warmpool
from dockyard.controller.executors.base import ExitStatus
from dockyard.controller.lifecycle import Events, RunCreated, RunStatus
from dockyard.controller.prepare import RunIdentity
from dockyard.controller.warmpool import Held, Key, WarmPool

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
BATCH = {"entry_point": {"job_type": "batch", "launcher": "x"}}


def test_capacity_is_the_budget_over_a_held_process_and_at_least_one_unless_off() -> None:
    assert warmpool.capacity(0) == 0
    assert warmpool.capacity(10, per_process_mb=70) == 1
    assert warmpool.capacity(280, per_process_mb=70) == 4
    assert warmpool.capacity(None) >= 0


def test_the_default_budget_is_the_idle_control_plane_again_less_on_a_small_machine() -> None:
    assert warmpool.default_mb(24 * 1024) == warmpool.CONTROL_PLANE_IDLE_MB
    assert warmpool.default_mb(2048) == 64
    assert warmpool.default_mb(0) == 0


def held(job_id: int, at: datetime = T0, config: str = "c1", run_id: str = "r1") -> Held:
    key = Key(job_id, "d1", config, "prod")
    return Held(key, "ws", RunIdentity(run_id, "prod", "d1", config), Path(run_id), at)


def test_idle_expiry() -> None:
    assert not warmpool.expired(held(1), T0 + timedelta(seconds=599), 600)
    assert warmpool.expired(held(1), T0 + timedelta(seconds=600), 600)


def test_the_least_recently_used_job_leaves_first() -> None:
    pool = {1: held(1), 2: held(2), 3: held(3)}
    used = {1: T0 + timedelta(seconds=5), 2: T0 + timedelta(seconds=1), 3: T0 + timedelta(9)}
    assert warmpool.evictee(pool, used) == 2
    assert warmpool.evictee(pool, {}) == 1  # none used since filled: the oldest, lowest id
    assert warmpool.evictee({}, used) is None


class Executor:
    def __init__(self) -> None:
        self.released: list[tuple[Path, dict[str, Any]]] = []
        self.exited: set[Path] = set()

    def release(self, run_dir: Path, payload: dict[str, Any]) -> bool:
        self.released.append((run_dir, payload))
        return True

    def poll(self, run_dir: Path) -> ExitStatus | None:
        return ExitStatus(75, None) if run_dir in self.exited else None


@pytest.fixture
def pool(tmp_path: Path) -> WarmPool:
    lifecycle = SimpleNamespace(
        node="n1", events=Events(), executor="local", config_names=lambda ws: []
    )
    preparer = SimpleNamespace(settings=SimpleNamespace(runs_dir=tmp_path / "runs"))
    made = WarmPool(None, FakeClock(T0), preparer, Executor(), lifecycle, limit=2)  # type: ignore[arg-type]
    assert lifecycle.take_warm == made.take  # run creation asks the pool
    return made


def put(pool: WarmPool, h: Held, tmp_path: Path) -> Held:
    h = Held(h.key, h.workspace, h.identity, tmp_path / h.identity.run_id, h.started_at)
    pool._held[h.key.job_id] = h
    return h


def ws(config: str = "c1", executor: str | None = None) -> Any:
    return SimpleNamespace(
        deployment_version="d1", configuration_version=config, name="ws", executor=executor
    )


def job(job_id: int = 1, job_type: str = "batch") -> Any:
    return SimpleNamespace(id=job_id, job_type=job_type, definition=BATCH)


def discarded(pool: WarmPool) -> list[Path]:
    executor: Executor = pool.executor  # type: ignore[assignment]
    return [d for d, payload in executor.released if payload == {"discard": True}]


def test_a_matching_held_process_is_taken_and_released_once_its_run_is_committed(
    pool: WarmPool, tmp_path: Path
) -> None:
    h = put(pool, held(1), tmp_path)
    releases: list[tuple[str, Path]] = []
    pool.release = lambda run_id, run_dir: releases.append((run_id, run_dir))

    assert pool.take(ws(), job()) == "r1"
    assert pool.held() == []
    pool.lifecycle.events.deliver(RunCreated("r1", RunStatus.STARTING, True, warm=True))

    assert releases == [("r1", h.run_dir)]
    assert discarded(pool) == []


def test_a_changed_configuration_discards_the_held_process_and_the_run_starts_cold(
    pool: WarmPool, tmp_path: Path
) -> None:
    h = put(pool, held(1, config="c1"), tmp_path)
    assert pool.take(ws(config="c2"), job()) is None
    assert discarded(pool) == [h.run_dir]


def test_a_workspace_switched_to_docker_discards_the_held_local_process(
    pool: WarmPool, tmp_path: Path
) -> None:
    h = put(pool, held(1), tmp_path)
    assert pool.take(ws(executor="docker"), job()) is None
    assert discarded(pool) == [h.run_dir]


def test_an_idle_expired_or_exited_process_is_never_taken(pool: WarmPool, tmp_path: Path) -> None:
    old = put(pool, held(1, at=T0 - timedelta(seconds=601)), tmp_path)
    assert pool.take(ws(), job()) is None
    gone = put(pool, held(1, run_id="r2"), tmp_path)
    pool.executor.exited.add(gone.run_dir)  # type: ignore[attr-defined]
    assert pool.take(ws(), job()) is None
    assert discarded(pool) == [old.run_dir, gone.run_dir]


def test_no_free_slot_or_an_app_takes_nothing_and_the_process_stays(
    pool: WarmPool, tmp_path: Path
) -> None:
    put(pool, held(1), tmp_path)
    pool.slot_free = lambda: False
    assert pool.take(ws(), job()) is None
    pool.slot_free = lambda: True
    assert pool.take(ws(), job(job_type="interactive")) is None
    assert [h.identity.run_id for h in pool.held()] == ["r1"]
    assert discarded(pool) == []


def test_another_jobs_process_is_not_taken(pool: WarmPool, tmp_path: Path) -> None:
    put(pool, held(2), tmp_path)
    assert pool.take(ws(), job(1)) is None
    assert [h.key.job_id for h in pool.held()] == [2]


def test_idle_processes_expire_on_the_pools_step(pool: WarmPool, tmp_path: Path) -> None:
    h = put(pool, held(1), tmp_path)
    pool.clock.advance(600)  # type: ignore[attr-defined]
    pool._expire(pool.clock.now())
    assert pool.held() == [] and discarded(pool) == [h.run_dir]


def test_a_burst_warms_only_what_the_pool_holds_the_most_recent_first_wanted_first() -> None:
    assert warmpool.wanted_now([5, 1, 2, 1, 3], limit=2) == [1, 3]
    assert warmpool.wanted_now([7, 8, 7], limit=4) == [7, 8]
    assert warmpool.wanted_now([], limit=2) == []


def test_a_gone_process_of_a_recently_used_job_is_replaced(pool: WarmPool, tmp_path: Path) -> None:
    h = put(pool, held(1), tmp_path)
    pool._used[1] = T0
    pool.executor.exited.add(h.run_dir)  # type: ignore[attr-defined]
    pool._expire(T0 + timedelta(seconds=5))
    assert pool.held() == [] and pool._wanted == [1]
