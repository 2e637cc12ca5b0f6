"""A run's life, in one place: where its status is decided and the only code that writes it.

- `status`: the statuses, the lists (active, launched, terminal) and the table of legal moves.
- `decisions`: pure — what a new run becomes (`decide`), how an exit ends it (`outcome`).
- `facts`: the reads those decisions need, in one call.
- `writer`: `Lifecycle` (create, claim, mark running, requeue, cancel, stop idle, finish with
  the interval ledger, refresh cascade and follow-ups) and `move`, the guarded write.
- `events`: what happened, told to the loops after the commit (run created, requeued, stop
  requested, ended; deployed).

The runner (`controller/runner.py`) drives processes through an executor and calls the writer
for every change; the scheduler, the API's triggers and cancels, and the app monitor do the same.
"""

from dockyard.controller.lifecycle.decisions import Request, outcome
from dockyard.controller.lifecycle.events import (
    Deployed,
    Events,
    RunCreated,
    RunEnded,
    RunRequeued,
    StopRequested,
)
from dockyard.controller.lifecycle.status import (
    ACTIVE,
    LAUNCHED,
    TERMINAL,
    IllegalMove,
    RunStatus,
)
from dockyard.controller.lifecycle.writer import Lifecycle, move

__all__ = [
    "ACTIVE",
    "LAUNCHED",
    "TERMINAL",
    "Deployed",
    "Events",
    "IllegalMove",
    "Lifecycle",
    "Request",
    "RunCreated",
    "RunEnded",
    "RunRequeued",
    "RunStatus",
    "StopRequested",
    "move",
    "outcome",
]
