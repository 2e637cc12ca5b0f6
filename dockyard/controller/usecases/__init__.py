"""The use cases behind the JSON API and the dashboard, one module per resource: parse
nothing, render nothing.

Each function takes the controller, the caller's principal and plain arguments, checks the
principal's rights (`access`), does the work in one transaction and returns JSON-ready data
(the shapes the API declares in `web/api_models.py`). Call them through their module:
`usecases.runs.trigger(ctl, who, ws, selectors)`.

- `audit`: the audit log, read (events are written by each change's use case)
- `access`: find a workspace or run by name and check the caller's right to it
- `workspaces`, `tokens`, `jobs`, `runs`, `deployments`: one resource each, as in the API's URLs
- `beacon`: what a running job reports to its beacon
- `github`: a workspace's link to a GitHub repository (the receiver is `dockyard/webhooks`)
- `github_apps`: the same link made through a GitHub App (the App stored once, shared)
- `alerts`: a workspace's alert channels and their delivery records (docs/alerts.md)
- `leases`: the named leases of the work that must happen once across servers (read only)
- `workers`: the nodes (controllers, later workers) that hold runs, with their heartbeats
- `github_oidc`: which GitHub repositories and refs may deploy a workspace, and the exchange
  of an Actions job's OIDC token for a short-lived token
"""

from dockyard.controller.usecases import (
    access,
    alerts,
    audit,
    beacon,
    deployments,
    github,
    github_apps,
    github_oidc,
    jobs,
    leases,
    runs,
    tokens,
    workers,
    workspaces,
)

__all__ = [
    "access",
    "alerts",
    "audit",
    "beacon",
    "deployments",
    "github",
    "github_apps",
    "github_oidc",
    "jobs",
    "leases",
    "runs",
    "tokens",
    "workers",
    "workspaces",
]
