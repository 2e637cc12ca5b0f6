"""A run's statuses and the moves between them: the one table every status write checks.

```
          ┌──────────── skipped (made, never run: concurrency, freshness, window)
 create ──┼──▶ pending ──claim──▶ starting ──launched──▶ running ──exit──▶ completed
          │       │  ▲ requeue       │  │                  │  └──────────▶ failed
          │       │  └───────────────┘  │                  │
          └──▶ starting (prepared:      │             cancel/idle
                 its process is held)   │                  ▼
                  │                     └──cancel──▶ cancelling ──exit──▶ cancelled
                  └─ cancel while pending ─────────────────────────────▶ cancelled
```
A move the table does not allow is a programming error (`IllegalMove`), never a silent
0-row update. A guarded write that finds the run already moved by someone else (a cancel
racing an exit) is not an error: the writer reports it did nothing.

Stdlib only: the pure decisions and the pages import it.
"""

from collections.abc import Collection
from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"  # waiting for the runner to claim it
    STARTING = "starting"  # claimed: environment, code and configuration being prepared
    RUNNING = "running"  # its process was started (or released)
    CANCELLING = "cancelling"  # asked to stop (cancel, idle app): SIGTERM, then SIGKILL
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # made but not run, with the reason (never started)


S = RunStatus
ACTIVE: tuple[RunStatus, ...] = (S.PENDING, S.STARTING, S.RUNNING, S.CANCELLING)
LAUNCHED: tuple[RunStatus, ...] = (S.STARTING, S.RUNNING, S.CANCELLING)
TERMINAL: tuple[RunStatus, ...] = (S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED)

# from → the statuses a run may move to; `None` is creation
MOVES: dict[RunStatus | None, frozenset[RunStatus]] = {
    None: frozenset({S.PENDING, S.STARTING, S.SKIPPED}),
    S.PENDING: frozenset({S.STARTING, S.CANCELLED, S.FAILED}),
    # back to pending: a prepared process was never released, or preparation was cut short
    # by a restart; completed/failed: a launched process exited before it was recorded running
    S.STARTING: frozenset({S.PENDING, S.RUNNING, S.CANCELLING, S.COMPLETED, S.FAILED}),
    S.RUNNING: frozenset({S.CANCELLING, S.COMPLETED, S.FAILED}),
    S.CANCELLING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.SKIPPED: frozenset(),
}


class IllegalMove(Exception):
    """A move the table forbids: a bug in the caller, not a race."""

    def __init__(self, source: RunStatus | None, target: RunStatus) -> None:
        origin = "creation" if source is None else source.value
        allowed = ", ".join(sorted(m.value for m in MOVES[source])) or "nothing (it has ended)"
        super().__init__(f"a run cannot move from {origin} to {target.value} (allowed: {allowed})")
        self.source, self.target = source, target


def check(sources: Collection[RunStatus | None], target: RunStatus) -> None:
    """Raise `IllegalMove` unless every one of `sources` may move to `target`."""
    for source in sources:
        if target not in MOVES[source]:
            raise IllegalMove(source, target)


def parse(value: str) -> RunStatus:
    """The status a stored or requested string names (ValueError for an unknown one)."""
    return RunStatus(value)


def path(source: RunStatus, target: RunStatus) -> list[RunStatus]:
    """The shortest legal sequence of moves from `source` to `target` (excluding `source`);
    IllegalMove when the table has none."""
    frontier: list[list[RunStatus]] = [[source]]
    seen = {source}
    while frontier:
        route = frontier.pop(0)
        if route[-1] is target:
            return route[1:]
        for step in sorted(MOVES[route[-1]]):
            if step not in seen:
                seen.add(step)
                frontier.append([*route, step])
    raise IllegalMove(source, target)
