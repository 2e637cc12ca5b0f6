"""The dashboard's pure helpers: durations, relative times, trigger words, page cursors,
job filters and where a login may lead."""

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.controller import dashboard
from dockyard.errors import InvalidInput
from dockyard.web import formatting
from dockyard.web.pages.render import safe_next

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (0.0004, "0ms"),
        (0.85, "850ms"),
        (4.24, "4.2s"),
        (185, "3m 05s"),
        (7440, "2h 04m"),
        (3 * 86400 + 4 * 3600 + 5, "3d 4h"),
    ],
)
def test_durations(seconds: float | None, text: str) -> None:
    assert formatting.duration(seconds) == text


def test_a_run_lasts_until_it_ends_or_until_now() -> None:
    run = {"started_at": "2026-03-04T09:59:00+00:00", "finished_at": None}
    assert formatting.run_duration(run, NOW) == "1m 00s"
    run["finished_at"] = "2026-03-04T09:59:02.5+00:00"
    assert formatting.run_duration(run, NOW) == "2.5s"
    assert formatting.run_duration({"started_at": None}, NOW) == ""


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-10), "just now"),
        (timedelta(minutes=-5), "5 min ago"),
        (timedelta(hours=-3), "3 h ago"),
        (timedelta(days=-2), "2 d ago"),
        (timedelta(minutes=4), "in 4 min"),
        (timedelta(seconds=20), "in a moment"),
    ],
)
def test_relative_times(delta: timedelta, text: str) -> None:
    assert formatting.ago(NOW + delta, NOW) == text
    assert formatting.ago((NOW + delta).isoformat(), NOW) == text


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("*/15 * * * *", "every 15 minutes"),
        ("*/1 * * * *", "every minute"),
        ("* * * * *", "every minute"),
        ("5 * * * *", "hourly at :05"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("30 3 * * *", "daily at 03:30"),
        ("0 9 * * 1", "Mondays at 09:00"),
        ("0 9 * * 7", "Sundays at 09:00"),
        ("0 9 * * 1-5", "weekdays at 09:00"),
        ("0 0 1 * *", "monthly on day 1 at 00:00"),
        ("0 0 1 1 *", None),  # yearly: dlt's words
        ("0 9-17 * * *", None),
        ("not a cron", None),
    ],
)
def test_common_crons_in_words(cron: str, words: str | None) -> None:
    assert formatting.cron_words(cron) == words


def test_trigger_words_spell_out_crons_and_keep_dlts_words_otherwise() -> None:
    assert formatting.trigger_words("schedule:30 3 * * *", "x") == "daily at 03:30 (30 3 * * *)"
    assert formatting.trigger_words("schedule:0 0 1 1 *", "dlt words") == "dlt words"
    assert formatting.trigger_words("job.success:jobs.a.b", "after b succeeds") == (
        "after b succeeds"
    )


def test_a_cursor_comes_back_as_the_position_it_names() -> None:
    token = formatting.encode_cursor("2026-03-04T10:00:00.123456+00:00", "run-1|x")
    assert "=" not in token and "/" not in token
    at, run_id = formatting.decode_cursor(token)
    assert at == datetime(2026, 3, 4, 10, 0, 0, 123456, tzinfo=UTC)
    assert run_id == "run-1|x"


@pytest.mark.parametrize("token", ["", "!!!", "bm90IGEgY3Vyc29y", "MjAyNi0wMy0wNHxh"])
def test_a_damaged_cursor_is_refused(token: str) -> None:
    with pytest.raises(InvalidInput, match="bad page cursor"):
        formatting.decode_cursor(token)


@pytest.mark.parametrize(
    ("target", "goes_to"),
    [
        ("/ui/w/a/runs?status=failed", "/ui/w/a/runs?status=failed"),
        ("/apps/a/dash/", "/apps/a/dash/"),
        (None, "/ui/"),
        ("https://evil.example/", "/ui/"),
        ("//evil.example/", "/ui/"),
        ("/\\evil.example", "/ui/"),
        ("/\t/evil.example", "/ui/"),
    ],
)
def test_login_only_leads_to_a_local_page(target: str | None, goes_to: str) -> None:
    assert safe_next(target) == goes_to


def listed(
    ref: str, tags: tuple[str, ...] = (), status: str = "active", paused: bool = False
) -> dashboard.Listed:
    return dashboard.Listed(1, ref, "batch", status, paused, tags, f"{ref} {' '.join(tags)}")


def test_job_filters() -> None:
    nightly = listed("jobs.a.load", ("ingest", "nightly"), paused=True)
    old = listed("jobs.a.old", status="archived")
    assert dashboard.JobFilter().keeps(nightly) and not dashboard.JobFilter().keeps(old)
    assert dashboard.JobFilter(state="archived").keeps(old)
    assert dashboard.JobFilter(state="paused").keeps(nightly)
    assert dashboard.JobFilter(tag="untagged", state="all").keeps(old)
    assert not dashboard.JobFilter(tag="untagged").keeps(nightly)
    assert dashboard.JobFilter(text=" NIGHT ").keeps(nightly)
    assert not dashboard.JobFilter(job_type="interactive").keeps(nightly)


def test_a_job_is_listed_under_each_of_its_tags_untagged_last() -> None:
    jobs = [listed("jobs.a.z", ("b", "a")), listed("jobs.a.y"), listed("jobs.a.x", ("b",))]
    entries = dashboard.tag_entries(jobs)
    assert [(t, j.job_ref) for t, j in entries] == [
        ("a", "jobs.a.z"),
        ("b", "jobs.a.x"),
        ("b", "jobs.a.z"),
        ("untagged", "jobs.a.y"),
    ]
    assert [t for t, _ in dashboard.tag_entries(jobs, "b")] == ["b", "b"]
