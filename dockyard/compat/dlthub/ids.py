"""Pure mappings between dockyard's identities and words and the dlthub client's.

The client parses workspace, job, deployment and configuration ids as UUIDs; dockyard names
them by integer ids, job refs and commit shas. Each UUID here is a `uuid5` of the dockyard
identity under one fixed namespace, so it is the same on every server start and every node,
and needs no column: finding the row again is a lookup among a bounded set (the workspaces,
or one workspace's jobs or versions). Run ids are dockyard's own UUIDs.
"""

import base64
import hashlib
import uuid
from collections.abc import Iterable

from dockyard.controller import workspaces
from dockyard.controller.lifecycle.status import RunStatus

NAMESPACE = workspaces.DLTHUB_NAMESPACE


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


workspace_id = workspaces.dlthub_id
"""`RUNTIME__WORKSPACE_ID` for workspace `name` (row `ws_id`); `dockyard workspace info`
shows it, so it is the controller's."""


def job_id(ws_id: int, job_row_id: int, job_ref: str) -> str:
    return _uuid("job", ws_id, job_row_id, job_ref)


def job_version_id(job_uuid: str, fingerprint: str) -> str:
    """A job's definition as deployed: the same definition keeps its id across deploys."""
    return _uuid("job-version", job_uuid, fingerprint)


def deployment_id(ws_id: int, sha: str) -> str:
    return _uuid("deployment", ws_id, sha)


def configuration_id(ws_id: int, sha: str) -> str:
    return _uuid("configuration", ws_id, sha)


ORGANIZATION_ID = _uuid("organization")
"""The one synthetic organization every workspace of a server belongs to."""


def principal_id(token_id: int) -> str:
    """The caller (a token) as the client's `created_by` / `user_id`."""
    return _uuid("token", token_id)


NO_ONE = _uuid("nobody")
"""`created_by` of what no token made (the scheduler, a push)."""


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


STATUS = {
    RunStatus.PENDING: "pending",
    RunStatus.STARTING: "starting",
    RunStatus.RUNNING: "running",
    RunStatus.CANCELLING: "cancelling",
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
    RunStatus.SKIPPED: "skipped",
}
"""dockyard's run status → the client's `RunStatus`: the same words. `dlthub run -f` polls
until starting/running/completed/failed/cancelled; that always comes: a run is `skipped`
only at creation (a trigger answers a skip without a run id, so the client never polls it),
and a `pending` run leaves pending for starting, cancelled or failed (a run no node can take
fails after DOCKYARD_PLACEMENT_WAIT_S)."""

TO_DOCKYARD = {v: k for k, v in STATUS.items()}


def status(value: str) -> str:
    """The client's word for dockyard's run status `value`."""
    return STATUS.get(RunStatus(value), "unknown") if value in TO_DOCKYARD else "unknown"


SKIPS = (
    ("concurrency limit ", "skipped_concurrency_limit"),
    ("upstream ", "skipped_fresh"),
    ("interval complete:", "skipped_out_of_interval"),
    ("before the job's interval", "skipped_out_of_interval"),
    ("nothing new to cover:", "skipped_already_covered"),
    ("the window from ", "skipped_already_covered"),
)
"""How each of dockyard's skip reasons (`lifecycle.rules`, `lifecycle.decisions`) starts, and
the client's `TriggeredJobStatus` for it (tests/unit/test_dlthub_ids.py makes the reasons
with the rules themselves). Several freshness reasons join with "; ", each "upstream …"."""


def skip_status(reason: str | None) -> str:
    """The client's word for why a run was skipped; `skipped` when dockyard's is unknown."""
    for start, word in SKIPS:
        if reason and reason.startswith(start):
            return word
    return "skipped"


def content_hash(files: Iterable[tuple[str, bytes]]) -> str:
    """dlt's package content hash (`package_builder.compute_package_content_hash`) of
    (relative path, content) pairs: per file its path and the base64 SHA3-256 of its bytes
    (a symlink's: of its target), in path order. The client compares it with the hash of
    the package it would upload and skips the upload when they are equal."""
    digest = hashlib.sha3_256()
    for path, data in sorted(files):
        digest.update(path.encode("utf-8"))
        digest.update(base64.b64encode(hashlib.sha3_256(data).digest()))
    return base64.b64encode(digest.digest()).decode("ascii")


def profile_of(file_name: str) -> str:
    """`prod.config.toml` → `prod`; the base files (`config.toml`, `secrets.toml`) have none
    ("")."""
    parts = file_name.rsplit("/", 1)[-1].split(".")
    return parts[0] if len(parts) >= 3 and parts[-1] == "toml" else ""
