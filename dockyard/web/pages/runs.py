"""The runs list (filters, keyset pages), a run's page, its cancel and re-run buttons and its
live log.

The live log is a server-sent event stream that follows `usecases.runs.run_logs` by byte offset
(polled every 0.2 s), one bounded read (at most 1 MiB of log) per event. Each stream lasts
about `STREAM_S` and says where it stopped (the event id is the offset); the browser's
EventSource reconnects at once and resumes there, so no connection outlives a server
shutdown by more than a few seconds.
"""

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from dockyard.controller import dashboard, logs, usecases
from dockyard.controller.assembly import Controller
from dockyard.web import formatting
from dockyard.web.pages import render
from dockyard.web.pages.render import CheckedForm, Who

router = APIRouter(prefix="/ui/w/{ws}", include_in_schema=False)
POLL_S = 0.2
STREAM_S = 5.0
RETRY_MS = 200
PAGE_LINES = 20_000  # the most lines the page keeps (dockyard.js); a new stream starts there
RUN_PARTS = {"run-summary": "_run_summary.html", "run-outputs": "_run_outputs.html"}


@router.get("/runs")
def runs(
    ws: str,
    request: Request,
    who: Who,
    job: str = "",
    status: str = "",
    after: str = "",
) -> HTMLResponse:
    position = formatting.decode_cursor(after) if after else None
    data = dashboard.runs_page(
        render.controller(request), who, ws, job or None, status or None, position
    )
    following = formatting.encode_cursor(*data["next"]) if data["next"] else None
    return render.full(
        request,
        "runs.html",
        who,
        ws,
        "runs",
        data=data,
        job=job,
        status=status,
        after=after,
        next_cursor=following,
        statuses=("failed", "completed", "running", "pending", "cancelled", "skipped"),
        partials={"runs-table": "_runs_table.html"},
    )


@router.get("/runs/{run_id}")
def run_page(ws: str, run_id: str, request: Request, who: Who) -> HTMLResponse:
    run = dashboard.run_detail(render.controller(request), who, ws, run_id)
    return render.full(request, "run.html", who, ws, "runs", run=run, partials=RUN_PARTS)


@router.post("/runs/{run_id}/cancel")
def cancel(ws: str, run_id: str, request: Request, who: Who, form: CheckedForm) -> Response:
    ctl = render.controller(request)
    dashboard.run_detail(ctl, who, ws, run_id)  # a run of this workspace
    usecases.runs.cancel_run(ctl, who, run_id)
    return render.see_other(f"/ui/w/{quote(ws, safe='')}/runs/{quote(run_id, safe='')}")


@router.post("/runs/{run_id}/rerun")
def rerun(ws: str, run_id: str, request: Request, who: Who, form: CheckedForm) -> Response:
    """Run a finished run again; go to the new run's page."""
    ctl = render.controller(request)
    dashboard.run_detail(ctl, who, ws, run_id)  # a run of this workspace
    made = usecases.runs.rerun(ctl, who, run_id)
    return render.see_other(f"/ui/w/{quote(ws, safe='')}/runs/{quote(made['run_id'], safe='')}")


@router.get("/runs/{run_id}/log")
async def log_stream(
    ws: str, run_id: str, request: Request, who: Who, offset: int | None = None
) -> StreamingResponse:
    """`event: lines` (a JSON list of log lines, id = the next offset) while the run writes,
    then `event: end` once it is over and everything was sent. A new stream starts at the
    last `PAGE_LINES` lines (the page keeps no more), a resumed one where it stopped."""
    ctl = render.controller(request)
    await anyio.to_thread.run_sync(dashboard.run_detail, ctl, who, ws, run_id)
    resume = request.headers.get("last-event-id", "")
    if resume.isdigit():
        offset = int(resume)
    start = None if offset is None else min(max(0, offset), logs.MAX_OFFSET)
    events = _follow(request, ctl, who, run_id, start)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _follow(
    request: Request,
    ctl: Controller,
    who: usecases.access.Principal,
    run_id: str,
    offset: int | None,
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    ended = False  # seen terminal once: one more read for a line written just after
    # the stream's end is checked between events, never by cancelling a pending send: a
    # cancel scope around `yield` would cancel the response's own write of a big event
    deadline = anyio.current_time() + STREAM_S
    while anyio.current_time() < deadline and not await request.is_disconnected():
        if offset is None:
            chunk = await anyio.to_thread.run_sync(_tail, ctl, who, run_id)
        else:
            chunk = await anyio.to_thread.run_sync(usecases.runs.run_logs, ctl, who, run_id, offset)
        offset = chunk["next_offset"]
        if chunk["lines"]:  # one bounded read per event (at most 1 MiB of log)
            yield f"id: {offset}\nevent: lines\ndata: {json.dumps(chunk['lines'])}\n\n"
            continue  # more may be waiting
        if chunk["done"] and ended:
            yield f"event: end\ndata: {json.dumps({'status': chunk['status']})}\n\n"
            return
        ended = chunk["done"]
        await anyio.sleep(POLL_S)


def _tail(ctl: Controller, who: usecases.access.Principal, run_id: str) -> dict[str, Any]:
    """The first read of a new stream: the last `PAGE_LINES` lines, after a line that says
    how many earlier ones are not shown."""
    chunk = usecases.runs.run_logs(ctl, who, run_id, tail=PAGE_LINES, count=True)
    if chunk["offset"] > 0:
        hidden = chunk["line_count"] - PAGE_LINES
        note = f"… {hidden:,} earlier lines not shown here (the CLI's `logs --all` has them)"
        chunk["lines"] = [{"t": None, "s": "sys", "m": note}, *chunk["lines"]]
    return chunk
