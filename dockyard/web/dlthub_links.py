"""The links the `dlthub` CLI prints (built from `RUNTIME__API_BASE_URL` without its path:
`/w/<workspace id>`, `/w/<id>/runs/<run id>`, `/w/<id>/jobs/<job ref or id>`) redirect to
the matching dashboard pages under `/ui/w/<name>`. Installed with `--dlthub-compat` only."""

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from dockyard.compat.dlthub import service

router = APIRouter(include_in_schema=False)


def _to(request: Request, ws: str, kind: str | None = None, ref: str = "") -> RedirectResponse:
    target = service.page_for(request.app.state.dlthub, ws, kind, ref)
    return RedirectResponse(target, status_code=307)


@router.get("/w/{ws}")
def workspace_link(request: Request, ws: str) -> RedirectResponse:
    return _to(request, ws)


@router.get("/w/{ws}/runs/{run}")
def run_link(request: Request, ws: str, run: str) -> RedirectResponse:
    return _to(request, ws, "runs", run)


@router.get("/w/{ws}/jobs/{job}")
def job_link(request: Request, ws: str, job: str) -> RedirectResponse:
    return _to(request, ws, "jobs", job)


@router.get("/w/{ws}/pipelines/{name}")
def pipeline_link(request: Request, ws: str, name: str) -> RedirectResponse:
    """dockyard has no page per pipeline: the workspace's."""
    return _to(request, ws)
