"""The named leases, read for operators (admin): which server process holds the work that
must happen once (reconcile sweep, retention, GitHub sweeper), at which epoch, until when
(`controller/leases.py`). Nothing here changes a lease."""

from typing import Any

from dockyard.clock import isoformat
from dockyard.controller import leases
from dockyard.controller.assembly import Controller
from dockyard.controller.auth import Principal


def list_leases(ctl: Controller, principal: Principal) -> list[dict[str, Any]]:
    principal.require("admin")
    now = ctl.clock.now()
    return [
        {
            "name": row.name,
            "holder": row.holder,
            "epoch": row.epoch,
            "acquired_at": isoformat(row.acquired_at),
            "expires_at": isoformat(row.expires_at),
            "held": row.holder is not None and row.expires_at > now,
            "this_server": row.holder == ctl.holder,
        }
        for row in leases.listing(ctl.db)
    ]
