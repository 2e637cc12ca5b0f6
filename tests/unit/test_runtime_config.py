"""What a run takes from its job definition: profile, timeouts and the interval it covers."""

from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.controller import runtime_config
from tests.unit import samples
from tests.unit.samples import AFTER_HELLO, DASHBOARD, HELLO, SLEEPER, TINY_API

DEFAULTS = runtime_config.Defaults(timeout_s=3600.0, grace_s=30.0)
NOW = datetime(2026, 3, 4, 10, 7, 30, tzinfo=UTC)
CONFIG_FILES = ["config.toml", "prod.config.toml", "prod.secrets.toml"]


def at(hour: int, minute: int, second: int = 0, day: int = 4) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


def scheduled(cron: str, **extra: Any) -> dict[str, Any]:
    job = samples.job(HELLO)
    job["triggers"] = [f"schedule:{cron}"]
    job["default_trigger"] = f"schedule:{cron}"
    job.update(extra)
    return job


# profile --------------------------------------------------------------------------------------
def test_batch_jobs_run_with_prod() -> None:
    files = [*CONFIG_FILES, "access.config.toml"]

    assert runtime_config.profile(samples.job(HELLO), files) == "prod"
    assert runtime_config.profile(samples.job(HELLO), []) == "prod"


def test_interactive_jobs_run_with_access_when_it_is_configured() -> None:
    assert runtime_config.profile(
        samples.job(TINY_API), [*CONFIG_FILES, "access.secrets.toml"]
    ) == ("access")
    assert runtime_config.profile(samples.job(DASHBOARD), ["access.config.toml"]) == "access"


def test_interactive_jobs_fall_back_to_prod_without_access_config() -> None:
    assert runtime_config.profile(samples.job(TINY_API), CONFIG_FILES) == "prod"
    # a file merely mentioning access is not an access profile file
    assert runtime_config.profile(samples.job(TINY_API), ["prod.access.toml"]) == "prod"


@pytest.mark.parametrize("ref", [HELLO, TINY_API])
def test_declared_profile_wins(ref: str) -> None:
    job = samples.job(ref)
    job["require"] = {"profile": "staging"}

    assert runtime_config.profile(job, [*CONFIG_FILES, "access.config.toml"]) == "staging"


def test_an_empty_declared_profile_is_no_declaration() -> None:
    job = samples.job(TINY_API)
    job["require"] = {"profile": "", "timezone": "UTC"}

    assert runtime_config.profile(job, ["access.config.toml"]) == "access"


# timeouts -------------------------------------------------------------------------------------
def test_execute_timeout_gives_timeout_and_grace() -> None:
    assert runtime_config.timeouts(samples.job(SLEEPER), DEFAULTS) == (3.0, 1.0)


def test_no_timeout_takes_the_defaults() -> None:
    assert runtime_config.timeouts(samples.job(HELLO), DEFAULTS) == (3600.0, 30.0)


@pytest.mark.parametrize(
    ("execute", "expected"),
    [
        ({}, (3600.0, 30.0)),
        ({"timeout": None, "concurrency": 1}, (3600.0, 30.0)),
        ({"timeout": {"timeout": 90.5}}, (90.5, 30.0)),
        ({"timeout": {"grace_period": 5}}, (3600.0, 5.0)),
        ({"timeout": {"timeout": 60, "grace_period": 0}}, (60.0, 0.0)),
    ],
)
def test_timeout_spec_variants(execute: dict[str, Any], expected: tuple[float, float]) -> None:
    job = samples.job(HELLO)
    job["execute"] = execute

    assert runtime_config.timeouts(job, DEFAULTS) == expected


def test_a_job_without_execute_takes_the_defaults() -> None:
    job = samples.job(HELLO)
    del job["execute"]

    assert runtime_config.timeouts(job, DEFAULTS) == (3600.0, 30.0)


# interval -------------------------------------------------------------------------------------
def test_a_manual_run_of_an_unscheduled_job_is_a_point_in_time() -> None:
    start, end = runtime_config.interval(samples.job(HELLO), f"manual:{HELLO}", NOW, False)

    assert start == end == NOW


def test_a_follow_up_run_is_a_point_in_time() -> None:
    trigger = f"job.success:{HELLO}"

    assert runtime_config.interval(samples.job(AFTER_HELLO), trigger, NOW, False) == (NOW, NOW)


def test_a_five_minute_schedule_covers_the_last_elapsed_window() -> None:
    job = scheduled("*/5 * * * *")

    assert runtime_config.interval(job, "schedule:*/5 * * * *", NOW, False) == (
        at(10, 0),
        at(10, 5),
    )


def test_a_run_exactly_on_the_tick_covers_the_window_that_just_closed() -> None:
    job = scheduled("*/5 * * * *")

    assert runtime_config.interval(job, "schedule:*/5 * * * *", at(10, 10), False) == (
        at(10, 5),
        at(10, 10),
    )


def test_a_manual_run_of_a_scheduled_job_covers_the_last_window() -> None:
    job = scheduled("*/5 * * * *")

    assert runtime_config.interval(job, f"manual:{HELLO}", NOW, False) == (at(10, 0), at(10, 5))


def test_an_hourly_schedule_covers_the_last_full_hour() -> None:
    job = scheduled("0 * * * *")

    assert runtime_config.interval(job, "schedule:0 * * * *", NOW, False) == (at(9, 0), at(10, 0))


def test_a_daily_schedule_follows_the_jobs_timezone() -> None:
    job = scheduled("0 0 * * *", require={"timezone": "Europe/Berlin"})

    start, end = runtime_config.interval(job, "schedule:0 0 * * *", NOW, False)

    # midnight in Berlin (UTC+1 in March) is 23:00 UTC the day before
    assert (start, end) == (at(23, 0, day=2), at(23, 0, day=3))
    assert start.tzinfo is not None


def test_an_every_trigger_covers_the_period_up_to_now() -> None:
    job = samples.job(HELLO)
    job["triggers"] = ["every:15m"]
    job["default_trigger"] = "every:15m"

    assert runtime_config.interval(job, "every:15m", NOW, False) == (at(9, 52, 30), NOW)
