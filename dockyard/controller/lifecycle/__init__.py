"""A run's life, in one place: where its status is decided and the only code that writes it.

- `status`: the statuses, the lists (active, launched, terminal) and the table of legal moves.
- `rules`: pure — the window a run covers, freshness and concurrency gates (dlt's semantics).
- `decisions`: pure — what a new run becomes (`decide`), how an exit ends it (`outcome`).
- `facts`: the reads those decisions need, in one call.
- `writer`: `Lifecycle` (create, claim, mark running, requeue, cancel, stop idle, finish with
  the interval ledger, refresh cascade and follow-ups) and `move`, the guarded write.
- `events`: what happened, told to the loops after the commit (run created, requeued, stop
  requested, ended; deployed; a schedule paused or resumed).

The runner (`controller/runner.py`) drives processes through an executor and calls the writer
for every change; the scheduler, the API's triggers and cancels, and the app monitor do the same.
"""

from typing import TYPE_CHECKING, Any

from dockyard.controller.lifecycle.status import (
    ACTIVE,
    LAUNCHED,
    TERMINAL,
    IllegalMove,
    RunStatus,
)

if TYPE_CHECKING:
    from dockyard.controller.lifecycle.decisions import Request, outcome
    from dockyard.controller.lifecycle.events import (
        Deployed,
        Events,
        RunCreated,
        RunEnded,
        RunRequeued,
        ScheduleChanged,
        StopRequested,
    )
    from dockyard.controller.lifecycle.writer import Batch, Claim, Lifecycle, move

# the statuses load with the package (stdlib only: the CLI and the pages read them); the
# writer, its reads and events (SQLAlchemy) load when first named
_LAZY = {
    "Request": "decisions",
    "outcome": "decisions",
    "Deployed": "events",
    "Events": "events",
    "RunCreated": "events",
    "RunEnded": "events",
    "RunRequeued": "events",
    "StopRequested": "events",
    "ScheduleChanged": "events",
    "Batch": "writer",
    "Claim": "writer",
    "Lifecycle": "writer",
    "move": "writer",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "ACTIVE",
    "LAUNCHED",
    "TERMINAL",
    "Batch",
    "Claim",
    "Deployed",
    "Events",
    "IllegalMove",
    "Lifecycle",
    "Request",
    "RunCreated",
    "RunEnded",
    "RunRequeued",
    "RunStatus",
    "ScheduleChanged",
    "StopRequested",
    "move",
    "outcome",
]
