"""`/api/v1/worker/*`: what a `dockyard worker` host calls (worker tokens only), thin over
`controller/workerside.py`; docs/api.md describes each endpoint. The routes are plain
functions (FastAPI runs them in its thread pool) but the claim: its long poll waits on the
event loop without a thread (`WorkerSide.claim`), its database work runs in the pool.

A run's reports (`started`, `log`, `exit`) run at most `REPORT_THREADS` at once: a second's
worth of runs ending together on several workers must not take every thread and every turn
of the interpreter from the scheduler's fires and the next claims (measured in the fleet
benchmark: in its tail, a second whose exits all ran at once held up the next second's claims).
A report waits its turn on the event loop, holding no thread."""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from dockyard.controller import auth
from dockyard.controller.assembly import Controller
from dockyard.controller.executors.base import ExitStatus
from dockyard.controller.workerside import MAX_WAIT_S, LogGap, Registration
from dockyard.web import api_models as M
from dockyard.web.deps import ERRORS, MAX_INT, ApiRouter, controller, worker

router = ApiRouter(prefix="/api/v1/worker", responses=ERRORS)
Ctl = Annotated[Controller, Depends(controller)]
Worker = Annotated[auth.Principal, Depends(worker)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Epoch = Annotated[int, Field(ge=0, le=MAX_INT)]
REPORT_THREADS = 4
T = TypeVar("T")


async def _report(request: Request, call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` in a thread, at most `REPORT_THREADS` reports at once per app (the
    limiter belongs to the app's event loop, so it is made there, on first use)."""
    limiter = getattr(request.app.state, "worker_reports", None)
    if limiter is None:
        limiter = request.app.state.worker_reports = anyio.CapacityLimiter(REPORT_THREADS)
    return await anyio.to_thread.run_sync(call, *args, limiter=limiter)


class RegisterIn(BaseModel):
    name: Name
    pool: str = Field(default="default", max_length=64)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    executor: str = Field(default="local", pattern="^(local|docker)$")
    slots: int = Field(default=2, ge=1, le=1024)
    host: str = Field(default="", max_length=255)
    pid: int = Field(default=0, ge=0, le=MAX_INT)


class Held(BaseModel):
    run_id: str = Field(max_length=64)
    epoch: Epoch


class HeartbeatIn(BaseModel):
    name: Name
    incarnation: Epoch
    running: list[Held] = Field(default_factory=list, max_length=4096)


class ClaimIn(BaseModel):
    name: Name
    incarnation: Epoch
    free_slots: int = Field(ge=0, le=1024)
    wait_s: float = Field(default=MAX_WAIT_S, ge=0, le=MAX_WAIT_S)


class EpochIn(BaseModel):
    name: Name
    epoch: Epoch


class LogIn(EpochIn):
    offset: int = Field(ge=0, le=MAX_INT)
    data: str


class ExitIn(EpochIn):
    returncode: int | None = None
    signal: int | None = None
    error: str | None = Field(default=None, max_length=4096)
    code_roots: list[str] = Field(default_factory=list, max_length=16)


class Registered(M.Out):
    incarnation: int
    heartbeat_s: float


class HeartbeatOut(M.Out):
    stop: list[dict[str, Any]]
    given_up: list[str]


class Shipped(M.Out):
    offset: int


@router.post("/register", response_model=Registered)
def register(body: RegisterIn, ctl: Ctl, who: Worker) -> dict[str, Any]:
    """Register (or take over) a worker node; its runs are held under `name`, and only this
    worker token may act for it."""
    registration = Registration(
        body.name, body.pool, body.labels, body.executor, body.slots, body.host, body.pid
    )
    return ctl.workers.register(registration, who.token_id)


@router.post("/heartbeat", response_model=HeartbeatOut)
def heartbeat(body: HeartbeatIn, ctl: Ctl, who: Worker) -> dict[str, Any]:
    """The worker is alive; answers the runs to signal and those it no longer holds."""
    running = [(r.run_id, r.epoch) for r in body.running]
    return ctl.workers.heartbeat(body.name, body.incarnation, running, who.token_id)


class LeaveIn(BaseModel):
    name: Name
    incarnation: Epoch


@router.post("/leave", response_model=dict[str, Any])
def leave(body: LeaveIn, ctl: Ctl, who: Worker) -> dict[str, Any]:
    """A clean stop: the worker is listed `stopped` (its runs wait for its restart)."""
    return ctl.workers.leave(body.name, body.incarnation, who.token_id)


@router.post("/claim", response_model=list[dict[str, Any]])
async def claim(body: ClaimIn, ctl: Ctl, who: Worker) -> list[dict[str, Any]]:
    """Long poll: pending batch runs claimed for this worker (empty after `wait_s`); the
    wait holds no thread."""
    return await ctl.workers.claim(
        body.name, body.incarnation, body.free_slots, body.wait_s, who.token_id
    )


@router.get("/runs/{run_id}/config", response_model=dict[str, Any])
def config(
    run_id: str,
    ctl: Ctl,
    who: Worker,
    name: Annotated[str, Query(max_length=64)],
    epoch: Annotated[int, Query(ge=0, le=MAX_INT)],
) -> dict[str, Any]:
    """The run's decrypted configuration files, for its holder at `epoch` only."""
    return ctl.workers.config(name, run_id, epoch, who.token_id)


@router.post("/runs/{run_id}/started", response_model=dict[str, Any])
async def started(
    run_id: str, body: EpochIn, ctl: Ctl, who: Worker, request: Request
) -> dict[str, Any]:
    return await _report(request, ctl.workers.started, body.name, run_id, body.epoch, who.token_id)


@router.post("/runs/{run_id}/log", response_model=Shipped)
async def ship_log(run_id: str, body: LogIn, ctl: Ctl, who: Worker, request: Request) -> Any:
    """Bytes of the worker's log from `offset`; a resend is skipped, a gap is 409 with the
    offset the server expects."""
    data = body.data.encode()
    try:
        offset = await _report(
            request,
            ctl.workers.ship_log,
            body.name,
            run_id,
            body.epoch,
            body.offset,
            data,
            who.token_id,
        )
    except LogGap as gap:
        answer = {"error": gap.message, "code": gap.code, "expected": gap.expected}
        return JSONResponse(answer, status_code=409)
    return {"offset": offset}


@router.post("/runs/{run_id}/exit", response_model=dict[str, Any])
async def exit_(
    run_id: str, body: ExitIn, ctl: Ctl, who: Worker, request: Request
) -> dict[str, Any]:
    """The run's process ended: the run ends as the embedded runner would end it."""
    status = ExitStatus(body.returncode, body.signal, body.error)
    return await _report(
        request,
        ctl.workers.exit,
        body.name,
        run_id,
        body.epoch,
        status,
        body.code_roots,
        who.token_id,
    )
