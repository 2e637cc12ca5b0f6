"""`scheduling.ticks` and `lifecycle.rules`: when timed triggers fire, which window a run covers,
and why a run is skipped.

The semantics are dlt 1.31's (`interval.next_scheduled_run`, `compute_run_interval`,
`resolve_interval_spec`, `check_all_upstream_run_fresh`): cron is iterated on the *naive wall
clock* of the job's timezone and each naive tick is then read in that timezone (fold=0, i.e.
the first occurrence of a repeated time and the pre-transition offset for a skipped one). The
DST vectors below derive their expectations from that rule and check the transitions themselves
with zoneinfo rather than trusting a calendar.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dockyard.controller.lifecycle import rules
from dockyard.controller.scheduling import ticks

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"
HOURLY = "schedule:0 * * * *"
JOB_LAUNCHER = "dlt._workspace.deployment.launchers.job"
EPSILON = timedelta(milliseconds=5)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def job(**overrides: Any) -> dict[str, Any]:
    """A batch job shaped like dlt's manifest: hourly, with an interval, in Berlin time.

    An override of `None` removes the key."""
    definition: dict[str, Any] = {
        "job_ref": "jobs.s.a",
        "entry_point": {
            "module": "s",
            "function": "a",
            "job_type": "batch",
            "launcher": JOB_LAUNCHER,
        },
        "triggers": [HOURLY],
        "default_trigger": HOURLY,
        "interval": {"start": "2026-01-01T00:00:00+00:00"},
        "require": {"timezone": BERLIN},
        "execute": {"concurrency": 1},
    }
    definition.update(overrides)
    return {k: v for k, v in definition.items() if v is not None}


# DST transitions the vectors rely on, checked against the tz database ----------------------


@pytest.mark.parametrize(
    ("tz", "instant", "before", "after"),
    [
        # Berlin: 02:00 CET → 03:00 CEST, and 03:00 CEST → 02:00 CET
        (BERLIN, utc(2026, 3, 29, 1), timedelta(hours=1), timedelta(hours=2)),
        (BERLIN, utc(2026, 10, 25, 1), timedelta(hours=2), timedelta(hours=1)),
        # New York: 02:00 EST → 03:00 EDT, and 02:00 EDT → 01:00 EST
        (NEW_YORK, utc(2026, 3, 8, 7), timedelta(hours=-5), timedelta(hours=-4)),
        (NEW_YORK, utc(2026, 11, 1, 6), timedelta(hours=-4), timedelta(hours=-5)),
        # Lord Howe, a 30-minute shift: 02:00 LHDT → 01:30 LHST, and 02:00 LHST → 02:30 LHDT
        (LORD_HOWE, utc(2026, 4, 4, 15), timedelta(hours=11), timedelta(hours=10, minutes=30)),
        (LORD_HOWE, utc(2026, 10, 3, 15, 30), timedelta(hours=10, minutes=30), timedelta(hours=11)),
    ],
)
def test_the_dst_transitions_are_where_the_vectors_assume(
    tz: str, instant: datetime, before: timedelta, after: timedelta
) -> None:
    zone = ZoneInfo(tz)

    assert (instant - timedelta(seconds=1)).astimezone(zone).utcoffset() == before
    assert instant.astimezone(zone).utcoffset() == after


# first_fire --------------------------------------------------------------------------------


def test_first_fire_of_a_schedule_is_the_next_tick_in_the_job_timezone() -> None:
    now = utc(2026, 11, 29, 17, 19, 30)

    assert ticks.first_fire("schedule:*/3 * * * *", BERLIN, now) == utc(2026, 11, 29, 17, 21)
    # Berlin midnight is 23:00 UTC in winter; the same cron in UTC fires a day later
    assert ticks.first_fire("schedule:0 0 * * *", BERLIN, now) == utc(2026, 11, 29, 23)
    assert ticks.first_fire("schedule:0 0 * * *", "UTC", now) == utc(2026, 11, 30)


def test_first_fire_of_a_schedule_is_strictly_after_now_when_now_is_a_tick() -> None:
    assert ticks.first_fire(HOURLY, BERLIN, utc(2026, 6, 1, 10)) == utc(2026, 6, 1, 11)


def test_first_fire_of_every_waits_one_period() -> None:
    now = utc(2026, 11, 29, 17, 19, 30)

    assert ticks.first_fire("every:5m", "UTC", now) == utc(2026, 11, 29, 17, 24, 30)
    assert ticks.first_fire("every:2h", BERLIN, now) == utc(2026, 11, 29, 19, 19, 30)


def test_first_fire_of_a_future_once_is_that_time() -> None:
    trigger = "once:2026-06-01T12:00:00+00:00"

    assert ticks.first_fire(trigger, BERLIN, utc(2026, 5, 1)) == utc(2026, 6, 1, 12)


def test_first_fire_of_a_past_once_is_now() -> None:
    trigger = "once:2026-06-01T12:00:00+00:00"

    assert ticks.first_fire(trigger, "UTC", utc(2026, 7, 1, 8)) == utc(2026, 7, 1, 8)


# due ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", [HOURLY, "every:5m", "once:2026-06-01T12:00:00+00:00"])
def test_nothing_is_due_without_a_next_fire_time(trigger: str) -> None:
    assert ticks.due(trigger, BERLIN, None, utc(2026, 6, 1, 12)) is None


@pytest.mark.parametrize("trigger", [HOURLY, "every:5m", "once:2026-06-01T12:00:00+00:00"])
def test_nothing_is_due_before_the_next_fire_time(trigger: str) -> None:
    next_fire_at = utc(2026, 6, 1, 12)

    assert ticks.due(trigger, BERLIN, next_fire_at, next_fire_at - EPSILON) is None


def test_a_schedule_is_due_exactly_at_its_tick() -> None:
    fire = ticks.due(HOURLY, BERLIN, utc(2026, 6, 1, 12), utc(2026, 6, 1, 12))

    assert fire == ticks.Fire(utc(2026, 6, 1, 12), utc(2026, 6, 1, 13), 0)


def test_a_schedule_fires_on_time_for_its_tick() -> None:
    now = utc(2026, 6, 1, 12) + EPSILON

    fire = ticks.due(HOURLY, BERLIN, utc(2026, 6, 1, 12), now)

    assert fire == ticks.Fire(utc(2026, 6, 1, 12), utc(2026, 6, 1, 13), 0)


def test_a_controller_down_for_three_hours_fires_once_for_the_latest_tick() -> None:
    # due at 10:00; back at 13:00:05: ticks 10:00, 11:00 and 12:00 are skipped, 13:00 fires
    fire = ticks.due(HOURLY, "UTC", utc(2026, 6, 1, 10), utc(2026, 6, 1, 13, 0, 5))

    assert fire == ticks.Fire(utc(2026, 6, 1, 13), utc(2026, 6, 1, 14), 3)


def test_catch_up_across_berlin_spring_forward_counts_only_real_ticks() -> None:
    # down from 01:00 CET to 05:30 CEST: the naive 02:00 and 03:00 ticks are one instant
    # (01:00 UTC), so the skipped ticks are 00:00, 01:00 and 02:00 UTC
    fire = ticks.due(HOURLY, BERLIN, utc(2026, 3, 29, 0), utc(2026, 3, 29, 3, 30))

    assert fire == ticks.Fire(utc(2026, 3, 29, 3), utc(2026, 3, 29, 4), 3)


def test_catch_up_across_berlin_fall_back_counts_only_real_ticks() -> None:
    # down from 01:00 CEST to 04:30 CET: 02:00 is a tick once (CEST), so the skipped ticks
    # are 23:00, 00:00 and 02:00 UTC, and 03:00 UTC (04:00 CET) fires
    fire = ticks.due(HOURLY, BERLIN, utc(2026, 10, 24, 23), utc(2026, 10, 25, 3, 30))

    assert fire == ticks.Fire(utc(2026, 10, 25, 3), utc(2026, 10, 25, 4), 3)


def test_catch_up_of_a_daily_schedule_across_lord_howe_spring_forward() -> None:
    # 02:00 on 2026-10-04 does not exist; dlt reads it with the old offset: 15:30 UTC
    trigger = "schedule:0 2 * * *"

    fire = ticks.due(trigger, LORD_HOWE, utc(2026, 10, 2, 15, 30), utc(2026, 10, 5))

    # skipped 2026-10-03 02:00 LHST and 2026-10-04 02:00 (→ 02:30 LHDT); fires 10-05 02:00 LHDT
    assert fire == ticks.Fire(utc(2026, 10, 4, 15), utc(2026, 10, 5, 15), 2)


def test_every_fires_once_for_the_latest_elapsed_period() -> None:
    fire = ticks.due("every:5m", "UTC", utc(2026, 6, 1, 10), utc(2026, 6, 1, 10, 17))

    assert fire == ticks.Fire(utc(2026, 6, 1, 10, 15), utc(2026, 6, 1, 10, 20), 3)


def test_every_due_exactly_at_its_tick() -> None:
    fire = ticks.due("every:5m", "UTC", utc(2026, 6, 1, 10), utc(2026, 6, 1, 10))

    assert fire == ticks.Fire(utc(2026, 6, 1, 10), utc(2026, 6, 1, 10, 5), 0)


def test_every_keeps_its_grid_after_a_late_fire() -> None:
    fire = ticks.due("every:1h", "UTC", utc(2026, 6, 1, 10), utc(2026, 6, 1, 10, 59, 59))

    assert fire == ticks.Fire(utc(2026, 6, 1, 10), utc(2026, 6, 1, 11), 0)


def test_a_future_once_fires_at_its_time_and_never_again() -> None:
    trigger = "once:2026-06-01T12:00:00+00:00"
    first = ticks.first_fire(trigger, "UTC", utc(2026, 5, 1))

    fire = ticks.due(trigger, "UTC", first, utc(2026, 6, 1, 12) + EPSILON)

    assert fire == ticks.Fire(utc(2026, 6, 1, 12), None, 0)
    assert ticks.due(trigger, "UTC", None, utc(2026, 6, 2)) is None


def test_a_past_once_is_due_at_deploy_and_fires_for_its_own_instant() -> None:
    # dlt: a past `once` is due at once; its tick is the `once` instant itself, so the run's
    # unique (job, trigger, tick) stops a second run even if the schedule row were rebuilt
    trigger = "once:2026-06-01T12:00:00+00:00"
    deployed = utc(2026, 7, 1, 8)
    first = ticks.first_fire(trigger, "UTC", deployed)
    assert first == deployed

    fire = ticks.due(trigger, "UTC", first, deployed + EPSILON)

    assert fire == ticks.Fire(utc(2026, 6, 1, 12), None, 0)


# exactly once over DST days ---------------------------------------------------------------


def simulate(trigger: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """A scheduler that sleeps until the stored next fire time, wakes a few ms late, fires, and
    stores the next fire time it was given: the ticks it fires in `[start, end)`."""
    next_fire_at: datetime | None = ticks.first_fire(trigger, tz, start)
    fired: list[datetime] = []
    while next_fire_at is not None and next_fire_at < end:
        assert len(fired) < 10_000, "the scheduler does not advance"
        assert ticks.due(trigger, tz, next_fire_at, next_fire_at - EPSILON) is None
        fire = ticks.due(trigger, tz, next_fire_at, next_fire_at + EPSILON)
        assert fire is not None
        assert fire.tick == next_fire_at
        assert fire.missed == 0
        assert fire.next_fire_at is None or fire.next_fire_at > fire.tick + EPSILON
        fired.append(fire.tick)
        next_fire_at = fire.next_fire_at
    return fired


def local_day(tz: str, day: date) -> tuple[datetime, datetime]:
    """`[midnight, next midnight)` of a local calendar day, in UTC (midnight is never inside
    a transition in these zones)."""
    zone = ZoneInfo(tz)
    midnight = datetime.combine(day, time(), zone)
    next_midnight = datetime.combine(day + timedelta(days=1), time(), zone)
    return midnight.astimezone(UTC), next_midnight.astimezone(UTC)


def wall_clock_ticks(tz: str, day: date, wall_times: Iterable[time]) -> list[datetime]:
    """dlt's rule, spelled out: each naive wall-clock tick read in `tz` with fold=0 (the
    first of a repeated time, the old offset for a skipped one), as distinct UTC instants."""
    zone = ZoneInfo(tz)
    instants = {datetime.combine(day, t, zone).astimezone(UTC) for t in wall_times}
    return sorted(instants)


def every_minutes(step: int) -> list[time]:
    return [time(m // 60, m % 60) for m in range(0, 24 * 60, step)]


def fire_day(trigger: str, tz: str, day: date) -> list[datetime]:
    start, end = local_day(tz, day)
    ticks = simulate(trigger, tz, start - timedelta(seconds=1), end)
    assert ticks == sorted(set(ticks)), "ticks must increase strictly"
    assert all(start <= t < end for t in ticks)
    return ticks


def test_local_day_lengths_on_the_transition_days() -> None:
    def hours(tz: str, day: date) -> float:
        start, end = local_day(tz, day)
        return (end - start) / timedelta(hours=1)

    assert hours(BERLIN, date(2026, 3, 29)) == 23
    assert hours(BERLIN, date(2026, 10, 25)) == 25
    assert hours(NEW_YORK, date(2026, 3, 8)) == 23
    assert hours(NEW_YORK, date(2026, 11, 1)) == 25
    assert hours(LORD_HOWE, date(2026, 4, 5)) == 24.5
    assert hours(LORD_HOWE, date(2026, 10, 4)) == 23.5


def test_berlin_0230_fires_once_on_spring_forward_at_0330_cest() -> None:
    # 02:30 does not exist on 2026-03-29; dlt reads it with the CET offset: 01:30 UTC (03:30 CEST)
    ticks = fire_day("schedule:30 2 * * *", BERLIN, date(2026, 3, 29))

    assert ticks == [utc(2026, 3, 29, 1, 30)]


def test_berlin_0230_fires_once_on_fall_back_at_the_first_0230() -> None:
    # 02:30 happens twice on 2026-10-25 (00:30 UTC CEST, 01:30 UTC CET); dlt takes the first
    ticks = fire_day("schedule:30 2 * * *", BERLIN, date(2026, 10, 25))

    assert ticks == [utc(2026, 10, 25, 0, 30)]


def test_berlin_0230_fires_exactly_once_a_day_through_a_week_with_both_transitions() -> None:
    for first in (date(2026, 3, 26), date(2026, 10, 22)):
        start, _ = local_day(BERLIN, first)
        _, end = local_day(BERLIN, first + timedelta(days=6))

        ticks = simulate("schedule:30 2 * * *", BERLIN, start, end)

        local_days = [t.astimezone(ZoneInfo(BERLIN)).date() for t in ticks]
        assert local_days == [first + timedelta(days=n) for n in range(7)]


def test_hourly_across_berlin_fall_back_fires_24_times_in_the_25_hour_day() -> None:
    # What it means for users: an hourly cron runs 24 times on the 25-hour day. 02:00 is a tick
    # once (02:00 CEST = 00:00 UTC); the repeated hour 02:00 to 03:00 CET has no tick of its
    # own, so the 03:00 CET run (02:00 UTC) comes two real hours after the previous one and its
    # natural window [02:00 CEST, 03:00 CET) spans two hours. No hour is fired twice.
    ticks = fire_day(HOURLY, BERLIN, date(2026, 10, 25))

    assert len(ticks) == 24
    assert utc(2026, 10, 25, 1) not in ticks
    assert [t for t in ticks if utc(2026, 10, 24, 23) <= t <= utc(2026, 10, 25, 3)] == [
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 2),
        utc(2026, 10, 25, 3),
    ]
    assert ticks == wall_clock_ticks(BERLIN, date(2026, 10, 25), every_minutes(60))


def test_hourly_across_berlin_spring_forward_fires_23_times_in_the_23_hour_day() -> None:
    # the naive 02:00 (does not exist) and 03:00 ticks are the same instant, 01:00 UTC: one fire
    ticks = fire_day(HOURLY, BERLIN, date(2026, 3, 29))

    assert len(ticks) == 23
    # 00:00 CET, 01:00 CET, 02:00 = 03:00 CEST, 04:00 CEST
    assert [t for t in ticks if t <= utc(2026, 3, 29, 2)] == [
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
    ]
    assert ticks == wall_clock_ticks(BERLIN, date(2026, 3, 29), every_minutes(60))


def test_hourly_every_ignores_the_wall_clock_across_berlin_fall_back() -> None:
    # every: is a period in real time: 25 fires in the 25-hour day, an hour apart
    start, end = local_day(BERLIN, date(2026, 10, 25))

    ticks = simulate("every:1h", BERLIN, start - timedelta(hours=1), end)

    assert ticks == [start + timedelta(hours=n) for n in range(25)]


def test_quarter_hourly_across_new_york_spring_forward_is_an_even_grid() -> None:
    # 02:00 to 02:45 do not exist; read with EST they land on 03:00 to 03:45 EDT, the same
    # instants as the real 03:xx ticks: 92 fires, every 15 real minutes, none twice
    day = date(2026, 3, 8)

    ticks = fire_day("schedule:*/15 * * * *", NEW_YORK, day)

    start, _ = local_day(NEW_YORK, day)
    assert ticks == [start + timedelta(minutes=15 * n) for n in range(92)]
    assert ticks == wall_clock_ticks(NEW_YORK, day, every_minutes(15))


def test_quarter_hourly_across_new_york_fall_back_skips_the_repeated_hour() -> None:
    # 01:00 to 01:45 are ticks once (EDT, 05:00 to 05:45 UTC); the repeated 01:xx EST hour
    # has none: 96 fires in the 25-hour day, the gap after 01:45 EDT is 75 real minutes
    day = date(2026, 11, 1)

    ticks = fire_day("schedule:*/15 * * * *", NEW_YORK, day)

    assert len(ticks) == 96
    assert [t for t in ticks if utc(2026, 11, 1, 5, 30) <= t <= utc(2026, 11, 1, 7, 15)] == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 5, 45),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 7, 15),
    ]
    assert ticks == wall_clock_ticks(NEW_YORK, day, every_minutes(15))


def test_lord_howe_0200_fires_once_on_fall_back() -> None:
    # the clocks go 02:00 LHDT → 01:30 LHST, so 02:00 itself happens once, at +10:30
    ticks = fire_day("schedule:0 2 * * *", LORD_HOWE, date(2026, 4, 5))

    assert ticks == [utc(2026, 4, 4, 15, 30)]


def test_lord_howe_0200_fires_once_on_spring_forward_at_0230() -> None:
    # 02:00 does not exist (02:00 LHST → 02:30 LHDT); read with +10:30 it is 15:30 UTC = 02:30
    ticks = fire_day("schedule:0 2 * * *", LORD_HOWE, date(2026, 10, 4))

    assert ticks == [utc(2026, 10, 3, 15, 30)]
    assert ticks[0].astimezone(ZoneInfo(LORD_HOWE)).time() == time(2, 30)


def test_half_hourly_across_lord_howe_fall_back_skips_the_repeated_half_hour() -> None:
    # 01:30 is a tick once (LHDT, 14:30 UTC); the repeated 01:30 LHST (15:00 UTC) is not:
    # 48 fires in the 24.5-hour day, one gap of an hour
    day = date(2026, 4, 5)

    ticks = fire_day("schedule:*/30 * * * *", LORD_HOWE, day)

    assert len(ticks) == 48
    assert [t for t in ticks if utc(2026, 4, 4, 14) <= t <= utc(2026, 4, 4, 16)] == [
        utc(2026, 4, 4, 14),
        utc(2026, 4, 4, 14, 30),
        utc(2026, 4, 4, 15, 30),
        utc(2026, 4, 4, 16),
    ]
    assert ticks == wall_clock_ticks(LORD_HOWE, day, every_minutes(30))


def test_half_hourly_across_lord_howe_spring_forward_fires_the_shared_instant_once() -> None:
    # the naive 02:00 (does not exist) and 02:30 ticks are both 15:30 UTC: 47 fires in the
    # 23.5-hour day, every 30 real minutes
    day = date(2026, 10, 4)

    ticks = fire_day("schedule:*/30 * * * *", LORD_HOWE, day)

    start, _ = local_day(LORD_HOWE, day)
    assert ticks == [start + timedelta(minutes=30 * n) for n in range(47)]
    assert ticks == wall_clock_ticks(LORD_HOWE, day, every_minutes(30))


# upcoming ----------------------------------------------------------------------------------


def test_upcoming_schedule_lists_five_increasing_ticks_across_spring_forward() -> None:
    times = ticks.upcoming("schedule:30 2 * * *", BERLIN, utc(2026, 3, 28, 1, 30))

    assert times == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),  # 02:30 does not exist: 03:30 CEST
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
        utc(2026, 4, 1, 0, 30),
    ]


def test_upcoming_hourly_across_fall_back_skips_the_repeated_hour() -> None:
    times = ticks.upcoming(HOURLY, BERLIN, utc(2026, 10, 25, 0))

    assert times == [utc(2026, 10, 25, h) for h in (0, 2, 3, 4, 5)]


def test_upcoming_every_steps_by_the_period() -> None:
    times = ticks.upcoming("every:5m", "UTC", utc(2026, 6, 1, 10, 2, 30))

    assert times == [utc(2026, 6, 1, 10, 2, 30) + timedelta(minutes=5 * n) for n in range(5)]


def test_upcoming_honours_count() -> None:
    assert ticks.upcoming(HOURLY, "UTC", utc(2026, 6, 1, 10), count=2) == [
        utc(2026, 6, 1, 10),
        utc(2026, 6, 1, 11),
    ]


def test_upcoming_once_is_its_one_time() -> None:
    trigger = "once:2026-06-01T12:00:00+00:00"

    assert ticks.upcoming(trigger, "UTC", utc(2026, 6, 1, 12)) == [utc(2026, 6, 1, 12)]


@pytest.mark.parametrize("trigger", [HOURLY, "every:5m", "once:2026-06-01T12:00:00+00:00"])
def test_upcoming_without_a_next_fire_time_is_empty(trigger: str) -> None:
    assert ticks.upcoming(trigger, "UTC", None) == []


# window ------------------------------------------------------------------------------------

AT = utc(2026, 1, 1, 5, 10)  # 06:10 CET; the latest hourly tick is 05:00 UTC


def covers(decision: rules.Decision) -> tuple[datetime, datetime]:
    assert decision.skip_reason is None
    assert decision.window is not None
    return decision.window.start, decision.window.end


def test_first_run_of_an_interval_job_covers_from_the_snapped_start_to_the_latest_tick() -> None:
    # 00:30 UTC is 01:30 CET; the hourly tick at or before it is 01:00 CET = 00:00 UTC
    definition = job(interval={"start": "2026-01-01T00:30:00+00:00"})

    decision = rules.window(definition, HOURLY, AT, None, False)

    assert covers(decision) == (utc(2026, 1, 1), utc(2026, 1, 1, 5))


def test_an_interval_job_continues_from_its_last_completed_window() -> None:
    # missed ticks (02:00 to 04:00) are folded into this one window
    decision = rules.window(job(), HOURLY, AT, utc(2026, 1, 1, 2), False)

    assert covers(decision) == (utc(2026, 1, 1, 2), utc(2026, 1, 1, 5))


def test_refresh_goes_back_to_the_interval_start() -> None:
    decision = rules.window(job(), HOURLY, AT, utc(2026, 1, 1, 2), True)

    assert covers(decision) == (utc(2026, 1, 1), utc(2026, 1, 1, 5))


def test_a_completed_end_before_the_declared_start_starts_at_the_declared_start() -> None:
    definition = job(interval={"start": "2026-01-01T03:00:00+00:00"})

    decision = rules.window(definition, HOURLY, AT, utc(2025, 12, 1), False)

    assert covers(decision) == (utc(2026, 1, 1, 3), utc(2026, 1, 1, 5))


def test_the_window_end_is_clamped_to_the_snapped_interval_end() -> None:
    # end 03:30 UTC = 04:30 CET snaps back to 04:00 CET = 03:00 UTC
    definition = job(
        interval={"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T03:30:00+00:00"}
    )

    decision = rules.window(definition, HOURLY, AT, utc(2026, 1, 1, 1), False)

    assert covers(decision) == (utc(2026, 1, 1, 1), utc(2026, 1, 1, 3))


def test_a_manual_run_of_an_interval_job_uses_the_schedule_window() -> None:
    decision = rules.window(job(), "manual:jobs.s.a", AT, utc(2026, 1, 1, 4), False)

    assert covers(decision) == (utc(2026, 1, 1, 4), utc(2026, 1, 1, 5))


def test_a_daily_interval_window_across_berlin_spring_forward_is_47_hours() -> None:
    # start snaps to 2026-03-28 00:00 CET; at 08:00 CEST on 03-30 the latest tick is
    # 00:00 CEST on 03-30: two local days, one of them 23 hours long
    daily = "schedule:0 0 * * *"
    definition = job(
        triggers=[daily], default_trigger=daily, interval={"start": "2026-03-28T12:00:00+01:00"}
    )

    decision = rules.window(definition, daily, utc(2026, 3, 30, 6), None, False)

    start, end = covers(decision)
    assert (start, end) == (utc(2026, 3, 27, 23), utc(2026, 3, 29, 22))
    assert end - start == timedelta(hours=47)


def test_a_daily_interval_window_across_berlin_fall_back_is_25_hours() -> None:
    daily = "schedule:0 0 * * *"
    definition = job(triggers=[daily], default_trigger=daily)

    decision = rules.window(definition, daily, utc(2026, 10, 26, 5), utc(2026, 10, 24, 22), False)

    start, end = covers(decision)
    assert (start, end) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    assert end - start == timedelta(hours=25)


def test_nothing_new_to_cover_is_a_skip() -> None:
    decision = rules.window(job(), HOURLY, AT, utc(2026, 1, 1, 5), False)

    assert decision == rules.Decision(
        None, "nothing new to cover: already done up to 2026-01-01 05:00 UTC"
    )


def test_a_complete_interval_is_a_skip() -> None:
    definition = job(
        interval={"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T03:00:00+00:00"}
    )

    decision = rules.window(definition, HOURLY, AT, utc(2026, 1, 1, 3), False)

    assert decision == rules.Decision(
        None, "interval complete: everything up to 2026-01-01 03:00 UTC is done"
    )


def test_a_run_before_the_interval_start_is_a_skip() -> None:
    definition = job(interval={"start": "2026-02-01T00:00:00+00:00"})

    decision = rules.window(definition, HOURLY, AT, None, False)

    assert decision == rules.Decision(
        None, "before the job's interval, which starts 2026-02-01 00:00 UTC"
    )


def test_a_scheduled_job_without_interval_gets_the_elapsed_cron_interval() -> None:
    decision = rules.window(job(interval=None), HOURLY, AT, utc(2025, 1, 1), False)

    assert covers(decision) == (utc(2026, 1, 1, 4), utc(2026, 1, 1, 5))


def test_a_scheduled_job_without_interval_across_fall_back_spans_the_repeated_hour() -> None:
    # fired for 03:00 CET (02:00 UTC): the previous tick is 02:00 CEST (00:00 UTC)
    definition = job(interval=None)

    decision = rules.window(definition, HOURLY, utc(2026, 10, 25, 2) + EPSILON, None, False)

    assert covers(decision) == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))


def test_a_manual_run_without_interval_and_timed_trigger_is_a_point_in_time() -> None:
    definition = job(interval=None, triggers=[], default_trigger=None)

    decision = rules.window(definition, "manual:jobs.s.a", AT, None, False)

    assert covers(decision) == (AT, AT)


def test_a_follow_up_run_without_interval_is_a_point_in_time() -> None:
    follow = "job.success:jobs.s.b"
    definition = job(interval=None, triggers=[follow], default_trigger=None)

    decision = rules.window(definition, follow, AT, None, False)

    assert covers(decision) == (AT, AT)


def test_a_manual_run_of_a_scheduled_job_without_interval_gets_the_schedule_window() -> None:
    # as dlt's select_candidates / resolve_interval: the default trigger's interval math
    decision = rules.window(job(interval=None), "manual:jobs.s.a", AT, None, False)

    assert covers(decision) == (utc(2026, 1, 1, 4), utc(2026, 1, 1, 5))


def test_an_every_job_without_interval_covers_the_last_period() -> None:
    definition = job(interval=None, triggers=["every:5m"], default_trigger="every:5m")

    decision = rules.window(definition, "every:5m", AT, None, False)

    assert covers(decision) == (AT - timedelta(minutes=5), AT)


# concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("execute", "limit"),
    [
        (None, 1),
        ({}, 1),
        ({"concurrency": 1}, 1),
        ({"concurrency": 3}, 3),
        ({"concurrency": None}, None),
    ],
)
def test_concurrency_limit(execute: dict[str, Any] | None, limit: int | None) -> None:
    definition = job()
    definition.pop("execute")
    if execute is not None:
        definition["execute"] = execute

    assert rules.concurrency_limit(definition) == limit


def test_concurrency_below_the_limit_is_not_a_skip() -> None:
    assert rules.concurrency_skip(job(), []) is None
    assert rules.concurrency_skip(job(execute={"concurrency": 2}), [4]) is None


def test_concurrency_at_the_limit_names_the_active_runs() -> None:
    two = job(execute={"concurrency": 2})

    assert rules.concurrency_skip(job(), [7]) == (
        "concurrency limit 1 reached: run #7 still active"
    )
    assert rules.concurrency_skip(two, [9, 4]) == (
        "concurrency limit 2 reached: run #4, #9 still active"
    )


def test_unlimited_concurrency_is_never_a_skip() -> None:
    unlimited = job(execute={"concurrency": None})

    assert rules.concurrency_skip(unlimited, list(range(1, 101))) is None


# freshness ---------------------------------------------------------------------------------

UPSTREAM = "jobs.x.y"
NOW = utc(2026, 11, 29, 17, 19, 30)  # the latest */3 tick is 17:18


def upstream(*triggers: str, default: str | None = None, tz: str | None = None) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "job_ref": UPSTREAM,
        "entry_point": {
            "module": "x",
            "function": "y",
            "job_type": "batch",
            "launcher": JOB_LAUNCHER,
        },
        "triggers": list(triggers),
    }
    if default is not None:
        definition["default_trigger"] = default
    if tz is not None:
        definition["require"] = {"timezone": tz}
    return definition


def gated() -> dict[str, Any]:
    return job(freshness=[f"job.is_fresh:{UPSTREAM}"])


def freshness(up: dict[str, Any], prev_end: datetime | None, now: datetime = NOW) -> str | None:
    return rules.freshness_skip(gated(), {UPSTREAM: up}, {UPSTREAM: prev_end}, now)


EVERY_3 = "schedule:*/3 * * * *"


def test_an_upstream_that_never_completed_is_not_fresh() -> None:
    reason = freshness(upstream(EVERY_3, default=EVERY_3), None)

    assert reason == "upstream jobs.x.y: no completed run yet (or refreshed since)"


def test_a_scheduled_upstream_behind_the_elapsed_tick_is_not_fresh() -> None:
    reason = freshness(upstream(EVERY_3, default=EVERY_3), utc(2026, 11, 29, 17, 15))

    assert reason == (
        "upstream jobs.x.y: last completed interval ends 2026-11-29 17:15 UTC,"
        " needs ≥ 2026-11-29 17:18 UTC"
    )


def test_a_scheduled_upstream_at_the_elapsed_tick_is_fresh() -> None:
    assert freshness(upstream(EVERY_3, default=EVERY_3), utc(2026, 11, 29, 17, 18)) is None


def test_a_scheduled_upstream_in_its_own_timezone_across_spring_forward() -> None:
    # daily 06:00 Berlin; at 07:00 CEST on 2026-03-29 the elapsed tick is 04:00 UTC, while the
    # day before it was 05:00 UTC (06:00 CET)
    daily = "schedule:0 6 * * *"
    up = upstream(daily, default=daily, tz=BERLIN)
    now = utc(2026, 3, 29, 5)

    assert freshness(up, utc(2026, 3, 28, 5), now) == (
        "upstream jobs.x.y: last completed interval ends 2026-03-28 05:00 UTC,"
        " needs ≥ 2026-03-29 04:00 UTC"
    )
    assert freshness(up, utc(2026, 3, 29, 4), now) is None


def test_an_every_upstream_is_fresh_within_one_period() -> None:
    up = upstream("every:5m", default="every:5m")

    assert freshness(up, utc(2026, 11, 29, 17, 15)) is None
    assert freshness(up, utc(2026, 11, 29, 17, 14, 31)) is None


def test_an_every_upstream_one_period_behind_is_not_fresh() -> None:
    up = upstream("every:5m", default="every:5m")

    # exactly one period ago is already stale: interval_end is exclusive
    assert freshness(up, utc(2026, 11, 29, 17, 14, 30)) == (
        "upstream jobs.x.y: last completed interval ended 2026-11-29 17:14:30 UTC,"
        " more than one period (300s) ago"
    )
    assert freshness(up, utc(2026, 11, 29, 17, 0)) == (
        "upstream jobs.x.y: last completed interval ended 2026-11-29 17:00 UTC,"
        " more than one period (300s) ago"
    )


def test_a_manual_upstream_is_fresh_after_any_completion() -> None:
    up = upstream()

    assert freshness(up, utc(2020, 1, 1)) is None
    assert freshness(up, None) == "upstream jobs.x.y: no completed run yet (or refreshed since)"


def test_a_job_without_freshness_constraints_is_never_gated() -> None:
    assert rules.freshness_skip(job(), {}, {}, NOW) is None


def test_every_stale_upstream_is_named() -> None:
    other = "jobs.x.z"
    definition = job(freshness=[f"job.is_fresh:{UPSTREAM}", f"job.is_fresh:{other}"])
    second = upstream(EVERY_3, default=EVERY_3) | {"job_ref": other}
    jobs = {UPSTREAM: upstream(EVERY_3, default=EVERY_3), other: second}

    reason = rules.freshness_skip(
        definition, jobs, {UPSTREAM: None, other: utc(2026, 11, 29, 17, 18)}, NOW
    )
    assert reason == "upstream jobs.x.y: no completed run yet (or refreshed since)"

    reason = rules.freshness_skip(definition, jobs, {UPSTREAM: None, other: None}, NOW)
    assert reason == (
        "upstream jobs.x.y: no completed run yet (or refreshed since);"
        " upstream jobs.x.z: no completed run yet (or refreshed since)"
    )


# inside a repeated (fall-back) hour -----------------------------------------------------------
# dlt reads a naive time in the repeated hour as its first occurrence; asked from inside the
# second occurrence it would answer an instant in the past. The next fire must still be
# strictly after now, or a scheduler keeps firing (and, with */N crons, goes back in time).


def test_first_fire_inside_berlins_repeated_hour_is_tomorrow() -> None:
    now = utc(2026, 10, 25, 1, 10)  # 02:10 CET, the second 02:xx; today's 02:30 has passed
    assert ticks.first_fire("schedule:30 2 * * *", "Europe/Berlin", now) == utc(2026, 10, 26, 1, 30)


def test_due_inside_new_yorks_repeated_hour_moves_forward() -> None:
    trigger = "schedule:*/15 * * * *"
    now = utc(2026, 11, 1, 6, 10)  # 01:10 EST, the second 01:xx
    assert ticks.first_fire(trigger, "America/New_York", now) == utc(2026, 11, 1, 7)
    fire = ticks.due(trigger, "America/New_York", utc(2026, 11, 1, 5, 45), now)
    assert fire == ticks.Fire(utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 7), 0)


def test_a_missing_upstream_is_reported_not_deployed() -> None:
    job = {"job_ref": "jobs.s.down", "freshness": ["job.is_fresh:jobs.x.y"]}
    assert rules.freshness_skip(job, {}, {}, utc(2026, 6, 1)) == ("upstream jobs.x.y: not deployed")
