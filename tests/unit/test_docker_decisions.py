"""The Docker executor's decisions on time, driven by a `FakeClock` without an engine: how
long runs wait for an engine that went away, which signal deaths are the engine's doing,
which images collection removes."""

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from docker.errors import DockerException

from dockyard.clock import FakeClock
from dockyard.controller.executors.docker import events, images
from dockyard.controller.executors.docker.config import DockerConfig
from dockyard.controller.executors.docker.engine import Engine

START = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


class Answers:
    """A client whose engine answers a ping."""

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


def gone() -> Any:
    raise DockerException("connection refused")


def outages(clock: FakeClock, client: Any = gone) -> events.Outages:
    return events.Outages(Engine(client), clock, pause=lambda seconds: None)


def test_runs_wait_for_an_engine_that_went_away_until_the_give_up_time() -> None:
    clock = FakeClock(START)
    seen = outages(clock)
    assert seen.away_for() == 0 and not seen.away

    seen.lost()
    clock.advance(events.ENGINE_GIVE_UP_S - 1)
    seen.lost()  # seen again: still away since the first time
    assert seen.away and not events.gave_up(seen.away_for())

    clock.advance(1)
    assert events.gave_up(seen.away_for())

    seen.back()
    assert seen.away_for() == 0


def test_a_signal_death_near_an_outage_is_the_engines_doing() -> None:
    clock = FakeClock(START)
    seen = outages(clock, Answers)  # the engine answers again: only the outage can tell
    seen.lost()
    at = clock.now().timestamp()

    reason = seen.stop_reason(15, ended=at - events.OUTAGE_WINDOW_S)
    assert reason == (
        "the docker engine stopped or restarted during the run (the container got SIGTERM)"
    )
    assert seen.stop_reason(9, ended=at + events.OUTAGE_EARLY_S) is not None
    # long before the outage, or after it: someone's `docker kill`, the signal is the reason
    assert seen.stop_reason(9, ended=at - events.OUTAGE_WINDOW_S - 1) is None
    assert seen.stop_reason(9, ended=at + events.OUTAGE_EARLY_S + 1) is None


def test_a_signal_death_with_the_engine_not_answering_starts_an_outage() -> None:
    clock = FakeClock(START)
    seen = outages(clock)  # no outage seen yet, but the engine no longer answers

    reason = seen.stop_reason(200, ended=None)  # no end time: now, on the clock

    assert reason is not None and reason.endswith("(the container got signal 200)")
    assert seen.away and seen.away_for() == 0


def test_sightings_of_one_outage_count_once_and_only_the_last_ones_are_kept() -> None:
    assert events.note_outage([100.0], 100.5) == [100.0]
    assert events.note_outage([100.0], 101.5) == [100.0, 101.5]
    many = [float(10 * i) for i in range(events.OUTAGES_KEPT)]
    assert events.note_outage(many, 1000.0) == [*many[1:], 1000.0]


def image(name: str, created: str, tags: list[str] | None = None) -> Any:
    return SimpleNamespace(id=name, tags=tags or [f"repo:{name}"], attrs={"Created": created})


def test_collection_keeps_the_images_used_most_recently_on_the_clock(tmp_path: Path) -> None:
    clock = FakeClock(START)
    kept = images.Images(DockerConfig("base", state_dir=tmp_path), Engine(gone), clock)
    old = image("old", "2026-03-01T00:00:00.123456789Z")
    used = image("used", "2026-02-01T00:00:00Z")  # built first, but a run started from it
    new = image("new", "2026-03-03T00:00:00Z")
    busy = image("busy", "2026-01-01T00:00:00Z")  # oldest, but a container still has it

    clock.advance(60)
    kept.record_use("repo:used")
    uses = kept._use_times()

    assert uses == {"repo:used": START.timestamp() + 60}
    assert images.collectable([old, used, new, busy], uses, {"busy"}, keep=2) == [old]
    assert images.collectable([old, used, new, busy], uses, set(), keep=3) == [busy]


@pytest.mark.parametrize(
    ("created", "expected"),
    [("2026-03-04T10:00:00.5Z", START.timestamp() + 0.5), ("garbage", 0.0), ("", 0.0)],
)
def test_an_images_last_use_is_its_build_without_a_recorded_use(
    created: str, expected: float
) -> None:
    assert images.last_use(image("a", created), {}) == expected


def test_the_sweep_removes_ended_runs_and_only_its_own_orphans(tmp_path: Path) -> None:
    """A container whose run ended goes; one whose run folder is gone goes only when this
    server made it: another server on the same engine keeps its runs in its own folder."""
    from dockyard.controller.executors.docker.config import SERVER_LABEL
    from dockyard.controller.executors.docker.containers import sweepable
    from dockyard.shim import rundir

    ours, theirs = {SERVER_LABEL: "me"}, {SERVER_LABEL: "other"}
    running, ended, gone = tmp_path / "running", tmp_path / "ended", tmp_path / "gone"
    running.mkdir()
    ended.mkdir()
    rundir.write_exit(ended, rundir.ExitStatus(0, None), None)
    assert not sweepable(ours, running, "me")
    assert sweepable(ours, ended, "me") and sweepable(theirs, ended, "me")
    assert sweepable(ours, gone, "me")
    assert not sweepable(theirs, gone, "me") and not sweepable({}, gone, "me")
    assert not sweepable(ours, gone, None)  # no server id: nothing is known to be ours
