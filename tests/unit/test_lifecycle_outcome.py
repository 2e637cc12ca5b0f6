"""`decisions.outcome`: a run's final status and reason from why it was stopped and how it
exited."""

import signal

import pytest

from dockyard.controller.executors.base import ExitStatus
from dockyard.controller.lifecycle import decisions

OK = ExitStatus(returncode=0, signal=None)
TERMINATED = ExitStatus(returncode=None, signal=int(signal.SIGTERM))
KILLED = ExitStatus(returncode=None, signal=int(signal.SIGKILL))
LOST = ExitStatus(None, None, "lost: the run's supervisor ended without a status")


def test_a_clean_exit_completes() -> None:
    assert decisions.outcome(None, OK) == ("completed", None)


def test_a_non_zero_exit_fails_with_the_code() -> None:
    assert decisions.outcome(None, ExitStatus(returncode=3, signal=None)) == (
        "failed",
        "exit code 3",
    )


def test_the_exception_a_job_raised_is_the_reason_of_its_non_zero_exit() -> None:
    raised = "ModuleNotFoundError: No module named 'ibis' (usgs/transformations.py:13)"
    assert decisions.outcome(None, ExitStatus(1, None), raised=raised) == ("failed", raised)


@pytest.mark.parametrize("status", [TERMINATED, LOST, OK])
def test_a_raised_exception_never_hides_a_signal_an_executor_error_or_a_success(
    status: ExitStatus,
) -> None:
    assert decisions.outcome(None, status, raised="X: y") == decisions.outcome(None, status)


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
def test_a_stop_dockyard_asked_for_keeps_its_reason(stop: str) -> None:
    assert decisions.outcome(stop, ExitStatus(1, None), raised="X: y") == decisions.outcome(
        stop, ExitStatus(1, None)
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [(TERMINATED, "killed by signal SIGTERM"), (KILLED, "killed by signal SIGKILL")],
)
def test_a_signal_nobody_asked_for_fails_with_its_name(status: ExitStatus, reason: str) -> None:
    assert decisions.outcome(None, status) == ("failed", reason)


def test_an_executor_error_is_the_reason() -> None:
    assert decisions.outcome(None, LOST) == ("failed", LOST.error)
    start_error = ExitStatus(127, None, "[Errno 2] No such file or directory: 'python9'")
    assert decisions.outcome(None, start_error) == ("failed", start_error.error)


@pytest.mark.parametrize("status", [OK, TERMINATED, KILLED, LOST])
def test_a_requested_cancel_is_cancelled_however_the_process_ended(status: ExitStatus) -> None:
    assert decisions.outcome("cancel", status) == ("cancelled", "cancelled by request")


@pytest.mark.parametrize("status", [OK, TERMINATED, KILLED, LOST])
def test_a_timeout_fails_however_the_process_ended(status: ExitStatus) -> None:
    assert decisions.outcome("timeout", status) == ("failed", "timeout")


@pytest.mark.parametrize("status", [OK, TERMINATED, KILLED])
def test_an_idle_app_is_cancelled_with_its_idle_window(status: ExitStatus) -> None:
    assert decisions.outcome("idle", status, 300.0) == ("cancelled", "stopped after 5 min idle")
    assert decisions.outcome("idle", status, 8.0) == ("cancelled", "stopped after 8 s idle")


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [decisions.duration(s) for s in (5, 90, 300, 7200, 5400)] == [
        "5 s",
        "90 s",
        "5 min",
        "2 h",
        "90 min",
    ]


@pytest.mark.parametrize("status", [OK, TERMINATED, KILLED, ExitStatus(1, None)])
def test_an_app_stopped_with_the_server_is_cancelled_however_it_ended(status: ExitStatus) -> None:
    assert decisions.outcome("shutdown", status) == ("cancelled", "server stopped")
