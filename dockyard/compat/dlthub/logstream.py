"""A run's log in the dlthub client's two forms, read through dockyard's own bounded log
pages (`usecases.runs.run_logs`): the stored log as NDJSON, and the live log as server-sent
events (`event: log` per line), closed once the run has ended and its last line is sent,
which is how the client learns that the run is over.

dockyard's log lines are `{"t", "s", "m"}` with stream `out`/`err` (the job) or `sys`
(dockyard's own: environment, start, exit); the client's `LogLine` has a source (`user`,
`setup`; `runner` lines it hides), a stage and an io stream.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from dockyard.clock import isoformat
from dockyard.compat.dlthub.service import Compat, Principal
from dockyard.compat.dlthub.shapes import EPOCH
from dockyard.controller import usecases
from dockyard.controller.lifecycle import RunStatus

POLL_S = 0.5  # how often a live stream looks for new lines
KEEPALIVE_S = 10.0  # a comment line while nothing happens: a gone client is noticed
PAGE = 1000
STREAMS = {"out": ("user", "stdout"), "err": ("user", "stderr"), "sys": ("setup", "other")}


@dataclass(frozen=True, slots=True)
class Target:
    run_id: str
    status: str
    reason: str | None
    created_at: str


def target(compat: Compat, who: Principal, ws_uuid: str, run_id: str) -> Target:
    """The run (of that workspace, readable by `who`) whose log is asked for."""
    with compat.ctl.db.session() as session:
        ws = compat.workspace(session, who, ws_uuid, "read")
        row = compat.run_of(session, ws, run_id)
        return Target(row.id, row.status, row.reason, isoformat(row.created_at) or EPOCH)


def log_line(entry: dict[str, Any], number: int) -> dict[str, Any]:
    source, io_stream = STREAMS.get(str(entry.get("s")), ("setup", "other"))
    return {
        "content": str(entry.get("m", "")),
        "line_num": number,
        "reported_at": entry.get("t") or EPOCH,
        "source": source,
        "stage": "run",
        "io_stream": io_stream,
    }


def _skip_line(run: Target) -> dict[str, Any]:
    """A skipped run never ran, so it has no log: its one line says why."""
    entry = {"t": run.created_at, "s": "sys", "m": f"skipped: {run.reason or 'no reason recorded'}"}
    return log_line(entry, 0)


def stored(compat: Compat, who: Principal, run: Target) -> Iterator[str]:
    """NDJSON: every line the log holds now, one read page at a time."""
    if run.status == RunStatus.SKIPPED:
        yield json.dumps(_skip_line(run)) + "\n"
        return
    offset, number = 0, 0
    while True:
        page = usecases.runs.run_logs(compat.ctl, who, run.run_id, offset, None, PAGE)
        for entry in page["lines"]:
            yield json.dumps(log_line(entry, number)) + "\n"
            number += 1
        offset = page["next_offset"]
        if not page["more"]:
            return


async def live(compat: Compat, who: Principal, run: Target) -> AsyncIterator[str]:
    """SSE: the lines so far, then each new one, until the run has ended and its log is
    read to the end (its status is read before each page, so a page read after the run
    ended holds its last line). Each page is read in the thread pool; the waits between
    them hold no thread, so many followers cost no threads while their runs are quiet."""
    if run.status == RunStatus.SKIPPED:
        yield _event(_skip_line(run))
        return
    offset, number, idle = 0, 0, 0.0
    read = usecases.runs.run_logs
    while True:
        page = await run_in_threadpool(read, compat.ctl, who, run.run_id, offset, None, PAGE)
        for entry in page["lines"]:
            yield _event(log_line(entry, number))
            number += 1
        offset = page["next_offset"]
        if page["more"]:
            continue
        if page["done"]:
            return
        if page["lines"]:
            idle = 0.0
        elif idle >= KEEPALIVE_S:
            yield ": keepalive\n\n"
            idle = 0.0
        await asyncio.sleep(POLL_S)
        idle += POLL_S


def _event(line: dict[str, Any]) -> str:
    return f"event: log\ndata: {json.dumps(line)}\n\n"
