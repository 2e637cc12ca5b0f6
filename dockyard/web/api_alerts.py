"""Alert channel routes (`/api/v1/workspaces/{ws}/alerts…`, admin): thin over
`controller/usecases/alerts.py`; docs/api.md and docs/alerts.md describe them."""

from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel, Field

from dockyard.controller import auth, usecases
from dockyard.controller.assembly import Controller
from dockyard.web import api_models as M
from dockyard.web.deps import ERRORS, ApiRouter, controller, principal

router = ApiRouter(prefix="/api/v1", responses=ERRORS)
Ctl = Annotated[Controller, Depends(controller)]
Who = Annotated[auth.Principal, Depends(principal)]


class ChannelIn(BaseModel):
    name: str = Field(max_length=64)
    kind: str = Field(description="webhook, slack or email")
    events: list[str] | None = Field(
        default=None, max_length=4, description="of failed, timeout, lost, recovered (all)"
    )
    url: str | None = Field(
        default=None, max_length=2048, description="the webhook's URL; Slack's, stored sealed"
    )
    secret: str | None = Field(
        default=None,
        max_length=256,
        description="a webhook's signing secret, stored sealed (none: the server makes one)",
    )
    host: str | None = Field(default=None, max_length=253)
    port: int | None = None
    security: str | None = Field(default=None, description="starttls (default), ssl or none")
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=1024, description="stored sealed")
    sender: str | None = Field(default=None, max_length=320, description="the From address")
    to: list[str] | None = Field(default=None, max_length=20)


@router.get("/workspaces/{ws}/alerts", response_model=list[M.AlertChannel])
def list_alert_channels(ws: str, ctl: Ctl, who: Who) -> list[dict[str, Any]]:
    return usecases.alerts.list_channels(ctl, who, ws)


@router.post("/workspaces/{ws}/alerts", status_code=201, response_model=M.AlertChannelCreated)
def add_alert_channel(ws: str, body: ChannelIn, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Add a channel (admin). A webhook's generated secret is in this answer only."""
    fields = body.model_dump(exclude={"name", "kind", "events"}, exclude_none=True)
    return usecases.alerts.add_channel(ctl, who, ws, body.name, body.kind, fields, body.events)


@router.delete("/workspaces/{ws}/alerts/{name}", response_model=M.AlertChannelRemoved)
def remove_alert_channel(ws: str, name: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    return usecases.alerts.remove_channel(ctl, who, ws, name)


@router.post("/workspaces/{ws}/alerts/{name}/test", response_model=M.AlertDelivery)
def test_alert_channel(ws: str, name: str, ctl: Ctl, who: Who) -> dict[str, Any]:
    """Send a test message now (one attempt); the answer is its delivery record."""
    return usecases.alerts.test_channel(ctl, who, ws, name)


@router.get("/workspaces/{ws}/alert-deliveries", response_model=list[M.AlertDelivery])
def alert_deliveries(
    ws: str, ctl: Ctl, who: Who, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    """The newest delivery records, newest first."""
    return usecases.alerts.deliveries(ctl, who, ws, limit)
