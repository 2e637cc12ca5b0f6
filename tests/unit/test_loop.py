"""A background loop survives a database outage: database errors are told from bugs, the
backoff grows to at most 2 s, one warning per outage (not one per retry), and the loop goes on
stepping once the database is back."""

import logging

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from dockyard.controller import loop


class Flaky(loop.Loop):
    name = "flaky"

    def __init__(self, outcomes: list[Exception | None]) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.steps = 0

    def step(self) -> float:
        self.steps += 1
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return 5.0


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_database_errors_are_outages_and_other_errors_are_not() -> None:
    assert loop.is_outage(refused())
    assert not loop.is_outage(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not loop.is_outage(ValueError("a bug"))


def test_the_backoff_grows_to_two_seconds_and_stays_there() -> None:
    waits = [loop.backoff(n) for n in range(1, 8)]
    assert waits == sorted(waits)
    assert waits[0] < 1.0
    assert max(waits) == loop.BACKOFF_MAX_S == 2.0


def test_an_outage_is_logged_once_and_the_loop_steps_on(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky([refused() for _ in range(6)] + [None, refused(), None])
    with caplog.at_level(logging.WARNING, logger=loop.__name__):
        waits = [flaky.run_once() for _ in range(9)]
    assert flaky.steps == 9
    assert waits[:6] == [loop.backoff(n) for n in range(1, 7)]
    assert waits[6] == 5.0  # back: the step's own interval
    assert waits[7] == loop.backoff(1)  # a new outage starts the backoff again
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("database unavailable; retrying until it is back") == 2
    assert messages.count("database back") == 2


def test_a_bug_is_logged_with_its_traceback_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky([ValueError("a bug"), None])
    with caplog.at_level(logging.ERROR, logger=loop.__name__):
        assert flaky.run_once() == loop.AFTER_BUG_S
    assert caplog.records[0].exc_info is not None
    assert flaky.run_once() == 5.0
