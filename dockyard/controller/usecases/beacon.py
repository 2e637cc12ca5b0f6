"""What a run reports to its beacon (dlt's platform tracker): the token checked, the payload
capped and stored with the run's secret values redacted."""

import json
import threading

from sqlalchemy.orm import Session

from dockyard import crypto
from dockyard.controller import beacon, gitstore, logs
from dockyard.controller.assembly import Controller
from dockyard.controller.store.models import Run, Workspace
from dockyard.controller.usecases import access
from dockyard.errors import DockyardError, InvalidInput

_beacon_lock = threading.Lock()  # a run's caps are checked and its payload stored as one step


def beacon_run(ctl: Controller, token: str, kind: str) -> str:
    """The run a beacon token names (checked before its payload is read)."""
    run_id = beacon.run_id_of(ctl.beacon_secret, token)
    beacon.check_kind(kind)
    return run_id


def record_beacon(ctl: Controller, run_id: str, kind: str, raw: bytes) -> None:
    """Store a payload a run sent to its beacon, if the run is still going and within its
    caps (settings `beacon_max_*`)."""
    settings = ctl.settings
    limits = beacon.Limits(
        settings.beacon_max_bytes, settings.beacon_max_payloads, settings.beacon_max_run_bytes
    )
    with _beacon_lock, ctl.db.session() as session:
        beacon.check_open(session, run_id, kind, len(raw), limits)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput("beacon payload is not JSON") from exc
        secrets = _run_secrets(ctl, session, run_id)
        beacon.record(session, run_id, kind, body, secrets, size=len(raw))


def _run_secrets(ctl: Controller, session: Session, run_id: str) -> list[str]:
    """The run's secret values, to keep them out of what it reports: from its configuration
    folder while it runs, else decrypted again from its configuration version."""
    found = logs.redactions(ctl.preparer.run_dir(run_id))
    run = session.get(Run, run_id)
    if found or run is None or run.configuration_version is None:
        return found
    ws = session.get(Workspace, run.workspace_id)
    assert ws is not None
    repo = access.repo(ctl, ws.name)
    files = gitstore.config_files(repo, run.configuration_version)
    if not any(crypto.is_secret_file(n) for n in files):
        return []
    try:
        return crypto.open_files(files, lambda: ctl.keys.identities(session, ws))[1]
    except DockyardError:
        return []  # damaged secrets: the run was refused, nothing of them can leak
