"""Run slots: how many batch runs one host runs at once, and which waiting run goes next.

A host has `DOCKYARD_RUN_SLOTS` slots (default: two per core, at most one per GiB of memory).
A batch run takes one slot, or its instance size's weight (`DOCKYARD_SLOT_WEIGHTS`, e.g.
`large=2,xlarge=4`, from dlt's `require.instance.size`; capped at the host's slots, so a run
bigger than the host still runs, alone). Runs beyond the slots stay `pending` and go in a fair
order: each workspace's oldest scheduled run in turn (round robin, oldest first), so one
workspace's burst of 500 never holds another's one run back behind all of it. A run that does
not fit in the slots left waits, and nothing behind it overtakes it (a big run never starves).
Interactive runs (apps) do not take slots. Pure: the runner reads and claims.
"""

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GIB = 1024**3
PER_CORE = 2


def default_slots(cores: int | None = None, memory_bytes: int | None = None) -> int:
    """Two per core, at most one per GiB of memory, at least one."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    memory_bytes = memory_bytes if memory_bytes is not None else _memory()
    by_memory = memory_bytes // GIB if memory_bytes else PER_CORE * cores
    return max(1, min(PER_CORE * cores, by_memory))


def _memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def parse_weights(value: str) -> dict[str, int]:
    """`large=2,xlarge=4` → {"large": 2, "xlarge": 4} (ValueError naming the bad part)."""
    weights: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        size, sep, number = part.partition("=")
        if not sep or not size.strip() or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"{part!r} is not SIZE=N with N a whole number of slots ≥ 1")
        weights[size.strip()] = int(number)
    return weights


def weight(definition: Mapping[str, Any] | None, weights: Mapping[str, int], slots: int) -> int:
    """The slots one run of this job takes: its instance size's weight, else 1."""
    if not weights or not definition:
        return 1
    instance = (definition.get("require") or {}).get("instance") or {}
    size = instance.get("size") if isinstance(instance, dict) else None
    return max(1, min(slots, weights.get(str(size), 1))) if size is not None else 1


@dataclass(frozen=True, slots=True)
class Waiting:
    run_id: str
    workspace_id: int
    weight: int = 1


def pick(waiting: Sequence[Waiting], free: int) -> list[str]:
    """The runs to start with `free` slots: workspaces in turn (by their oldest run), each
    giving its oldest run; stops at the first run that does not fit. `waiting` is oldest
    first."""
    queues: dict[int, list[Waiting]] = {}
    for run in waiting:  # dicts keep insertion order: workspaces by their oldest run
        queues.setdefault(run.workspace_id, []).append(run)
    chosen: list[str] = []
    for run in _round_robin(queues.values()):
        if run.weight > free:
            break
        chosen.append(run.run_id)
        free -= run.weight
    return chosen


def _round_robin(queues: Iterable[list[Waiting]]) -> Iterable[Waiting]:
    lists = [list(q) for q in queues]
    depth = 0
    while True:
        row = [q[depth] for q in lists if depth < len(q)]
        if not row:
            return
        yield from row
        depth += 1


def waiting_text(in_use: int, slots: int) -> str:
    """What a pending run says while every slot is taken."""
    return f"waiting for a run slot: {in_use} of {slots} in use"
