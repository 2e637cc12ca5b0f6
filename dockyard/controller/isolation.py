"""Who may deploy code that runs without isolation.

Where the server cannot sandbox jobs on the local executor (no bubblewrap, no user
namespaces), a job can read the server's keys and database: anyone who can deploy is then as
good as an admin. Admin tokens and unlimited deploy tokens already are; a token limited to one
workspace is refused the deploy, unless the operator accepted the risk
(`DOCKYARD_UNISOLATED_DEPLOYS=allow`) or the workspace runs on Docker.
"""

from dockyard.controller.auth import Principal
from dockyard.controller.executors.sandbox import Isolation
from dockyard.errors import UNISOLATED_DEPLOY, Forbidden
from dockyard.settings import Settings


def check_deploy(
    principal: Principal, isolation: Isolation, executor: str, settings: Settings
) -> None:
    """Refuses a workspace-limited token's deploy to an unisolated local executor."""
    if principal.workspace_id is None or executor != "local" or isolation.isolated:
        return
    if settings.unisolated_deploys == "allow":
        return
    raise Forbidden(
        f"this server cannot isolate jobs on the local executor ({isolation.reason}), so a"
        " token limited to one workspace may not deploy; install bubblewrap on the server,"
        " move the workspace to Docker (`dockyard workspace set-executor docker`), or have"
        " an admin set DOCKYARD_UNISOLATED_DEPLOYS=allow",
        code=UNISOLATED_DEPLOY,
    )
