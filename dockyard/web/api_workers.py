"""`GET /api/v1/workers` (read): the nodes that hold runs, thin over
`controller/usecases/workers.py`; docs/api.md describes it."""

from typing import Annotated, Any

from fastapi import Depends

from dockyard.controller import auth, usecases
from dockyard.controller.assembly import Controller
from dockyard.web import api_models as M
from dockyard.web.deps import ERRORS, ApiRouter, controller, principal

router = ApiRouter(prefix="/api/v1", responses=ERRORS)
Ctl = Annotated[Controller, Depends(controller)]
Who = Annotated[auth.Principal, Depends(principal)]


@router.get("/workers", response_model=list[M.Worker])
def list_workers(ctl: Ctl, who: Who) -> list[dict[str, Any]]:
    """Controllers and workers: pool, labels, slots in use, last heartbeat, alive or lost."""
    return usecases.workers.list_workers(ctl, who)
