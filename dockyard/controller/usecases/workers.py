"""The nodes that hold runs, listed (`GET /api/v1/workers`, `dockyard worker list`, the
Settings page): controllers today, workers once they exist (controller/nodes.py). Any token
may read it: names, pools, labels and heartbeats, no address and nothing of a run."""

from typing import Any

from dockyard.controller import nodes
from dockyard.controller.assembly import Controller
from dockyard.controller.usecases.access import Principal


def list_workers(ctl: Controller, principal: Principal) -> list[dict[str, Any]]:
    principal.require("read")
    with ctl.db.session() as session:
        found = nodes.listing(session, ctl.membership.now(session))
    return [as_dict(view) for view in found]


def as_dict(view: nodes.NodeView) -> dict[str, Any]:
    return {
        "name": view.name,
        "kind": view.kind,
        "pool": view.pool,
        "labels": view.labels,
        "slots": view.slots,
        "slots_in_use": view.slots_in_use,
        "started_at": view.started_at.isoformat(),
        "last_heartbeat_at": view.last_heartbeat_at.isoformat(),
        "state": view.state,
    }
