"""GitHub Actions OIDC routes (`/api/v1`): the exchange a workflow calls without a dockyard
token (its GitHub job token is the credential, verified in `controller/github_oidc.py`), what
it needs to request that token, and the per-workspace rules (admin)."""

from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, Field

from dockyard.controller import auth, usecases
from dockyard.controller.assembly import Controller
from dockyard.controller.github_oidc import MAX_TOKEN_BYTES
from dockyard.web import api_models as M
from dockyard.web.deps import ERRORS, ApiRouter, controller, principal

router = ApiRouter(prefix="/api/v1", responses=ERRORS)
Ctl = Annotated[Controller, Depends(controller)]
Who = Annotated[auth.Principal, Depends(principal)]


class ExchangeIn(BaseModel):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_BYTES, description="the job's JWT")
    workspace: str = Field(min_length=1, max_length=64)


class RuleIn(BaseModel):
    repository: str = Field(max_length=140, description="OWNER/NAME")
    ref: str = Field(max_length=255, description="e.g. refs/heads/main, refs/pull/*/merge")
    role: str = "deploy"


@router.get("/auth/github-oidc", response_model=M.GithubOidcDiscovery)
def github_oidc_discovery(ctl: Ctl) -> dict[str, Any]:
    """The audience a GitHub Actions job must request its OIDC token with (no token needed)."""
    return usecases.github_oidc.discovery(ctl.settings)


@router.post("/auth/github-oidc", status_code=201, response_model=M.TokenCreated)
def github_oidc_exchange(body: ExchangeIn, ctl: Ctl) -> dict[str, Any]:
    """A GitHub Actions job's OIDC token for a short-lived token on one workspace, when a
    rule of that workspace allows the job's repository and ref."""
    return usecases.github_oidc.exchange(ctl, body.token, body.workspace)


@router.get("/workspaces/{ws}/github-oidc", response_model=list[M.GithubOidcRule])
def github_oidc_rules(ws: str, ctl: Ctl, who: Who) -> list[dict[str, Any]]:
    return usecases.github_oidc.list_rules(ctl, who, ws)


@router.post("/workspaces/{ws}/github-oidc", status_code=201, response_model=M.GithubOidcRule)
def github_oidc_allow(ws: str, body: RuleIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Let Actions jobs of `repository` on `ref` get tokens of `role` for the workspace."""
    return usecases.github_oidc.allow(ctl, who, ws, body.repository, body.ref, body.role)


@router.post("/workspaces/{ws}/github-oidc/remove", response_model=M.GithubOidcRule)
def github_oidc_remove(ws: str, body: RuleIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.github_oidc.remove(ctl, who, ws, body.repository, body.ref)
