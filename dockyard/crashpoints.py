"""Named points where the crash tests kill the controller (`DOCKYARD_CRASH_AT=<point>`).

Each point sits where a crash is most likely to lose or duplicate work: between a decision and
its commit, or between a side effect (a started process) and its record. In production the
variable is unset and `reached` is a dictionary lookup.
"""

import os
import signal

POINTS = ("tick_claimed", "run_row_written", "process_started", "run_finished", "follow_up_created")
WEBHOOK_POINTS = ("delivery_unprocessed",)
"""Points of the webhook processing loop, killed at by tests/e2e/test_github_crash.py (not
by test_crash.py's deploy-and-run scenario, which never reaches them)."""
ALERT_POINTS = ("alert_unsent",)
"""Points of the alert loop: a run's end and its alert committed, nothing sent yet
(tests/e2e/test_alerts.py)."""
_TARGET = os.environ.get("DOCKYARD_CRASH_AT")


def reached(point: str) -> None:
    """SIGKILL this process if the crash tests asked to die here."""
    assert point in POINTS or point in WEBHOOK_POINTS or point in ALERT_POINTS, point
    if point == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
