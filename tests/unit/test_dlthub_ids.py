"""The dlthub client's ids, statuses and skip words (`compat/dlthub/ids.py`): pure, no server.

Skip reasons are made by dockyard's own lifecycle decisions, so a reworded reason there fails
here instead of reaching the client as a bare `skipped`.
"""

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from dlt._workspace.deployment.package_builder import compute_package_content_hash

from dockyard.compat.dlthub import ids
from dockyard.controller.lifecycle import decisions
from dockyard.controller.lifecycle.decisions import Facts, Request
from dockyard.controller.lifecycle.status import TERMINAL, RunStatus
from dockyard.settings import Settings
from tests.unit.test_lifecycle import job

NOW = datetime(2026, 3, 4, 10, 2, tzinfo=UTC)
CLIENT_STATUSES = {
    "pending",
    "starting",
    "running",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
    "skipped",
}
"""The client's `RunStatus` (dlthub_sdk/_gen/api/models/run_status.py, 0.28.7)."""
CLIENT_SKIPS = {
    "skipped_fresh",
    "skipped_upstream_pending",
    "skipped_out_of_interval",
    "skipped_already_covered",
    "skipped_concurrency_limit",
    "skipped_org_concurrency_limit",
    "skipped_minutes_limit",
    "skipped_trial_expired",
    "skipped_paused",
    "skipped_workspace_archived",
}
"""The client's `TriggeredJobStatus` skip words (dlt_runtime/strings.py, 0.28.7)."""


def skip_reason(made: decisions.Creation) -> str:
    assert made.status is RunStatus.SKIPPED and made.reason
    return made.reason


def test_ids_are_uuids_stable_and_distinct() -> None:
    ws = ids.workspace_id(3, "sales")
    assert uuid.UUID(ws).version == 5 and ws == str(uuid.UUID(ws))  # lowercase, hyphenated
    assert ws == ids.workspace_id(3, "sales")
    made = {
        ws,
        ids.workspace_id(4, "sales"),  # a workspace made again under the same name
        ids.workspace_id(3, "other"),
        ids.job_id(3, 1, "jobs.s.a"),
        ids.job_id(3, 2, "jobs.s.a"),
        ids.deployment_id(3, "a" * 40),
        ids.configuration_id(3, "a" * 40),  # one commit: a deployment and a configuration
        ids.principal_id(1),
        ids.ORGANIZATION_ID,
    }
    assert len(made) == 9
    assert ids.is_uuid(ws) and ids.is_uuid(ws.upper()) and not ids.is_uuid("sales")


def test_every_status_is_the_clients_and_run_follow_always_stops_polling() -> None:
    assert {ids.status(s) for s in RunStatus} == CLIENT_STATUSES
    assert ids.status("no-such-status") == "unknown"
    # `dlthub run -f` polls until one of these; every dockyard run gets there from pending
    # (a skipped run is never polled: a skip is answered without a run id)
    stops = {"starting", "running", "completed", "failed", "cancelled"}
    assert {ids.status(s) for s in TERMINAL} - {"skipped"} <= stops
    assert ids.TO_DOCKYARD["skipped"] is RunStatus.SKIPPED


def test_a_concurrency_skip() -> None:
    facts = Facts(active_numbers=(4,))
    reason = skip_reason(decisions.decide(job(), Request("manual:jobs.s.a"), facts, NOW))
    assert ids.skip_status(reason) == "skipped_concurrency_limit"


def test_a_freshness_skip() -> None:
    gated = job("schedule:5 * * * *", freshness=["job.is_fresh:jobs.s.up", "job.is_fresh:jobs.s.x"])
    upstream = {"jobs.s.up": job("schedule:0 * * * *").definition | {"job_ref": "jobs.s.up"}}
    facts = Facts(upstream=upstream, upstream_ends={"jobs.s.up": None})
    reason = skip_reason(decisions.decide(gated, Request("schedule:5 * * * *"), facts, NOW))
    assert ids.skip_status(reason) == "skipped_fresh"


INTERVAL = {"interval": {"start": "2026-03-04T08:00:00+00:00", "end": "2026-03-04T09:00:00+00:00"}}


def test_interval_skips() -> None:
    hourly = job("schedule:0 * * * *", **INTERVAL)
    done = datetime(2026, 3, 4, 9, tzinfo=UTC)
    tick = Request("schedule:0 * * * *")
    complete = decisions.decide(hourly, tick, Facts(completed_end=done), NOW)
    assert ids.skip_status(skip_reason(complete)) == "skipped_out_of_interval"

    early = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)
    before = decisions.decide(hourly, tick, Facts(), early)
    assert ids.skip_status(skip_reason(before)) == "skipped_out_of_interval"

    open_ended = job("schedule:0 * * * *", interval={"start": "2026-03-04T08:00:00+00:00"})
    covered = Facts(completed_end=datetime(2026, 3, 4, 10, tzinfo=UTC))
    again = decisions.decide(open_ended, tick, covered, NOW)
    assert ids.skip_status(skip_reason(again)) == "skipped_already_covered"

    start = datetime(2026, 3, 4, 9, tzinfo=UTC)
    taken = Facts(completed_end=start, taken_windows={start: 7})
    busy = decisions.decide(open_ended, Request("manual:jobs.s.a", gated=False), taken, NOW)
    assert ids.skip_status(skip_reason(busy)) == "skipped_already_covered"


def test_every_mapped_word_is_the_clients_and_an_unknown_reason_is_plain_skipped() -> None:
    assert {word for _, word in ids.SKIPS} <= CLIENT_SKIPS
    assert ids.skip_status("a reason dockyard does not give yet") == "skipped"
    assert ids.skip_status(None) == "skipped"


def test_the_content_hash_is_dlts() -> None:
    files = {"pyproject.toml": b"[project]\n", "a/b.py": b"print(1)\n", "link": b"a/b.py"}
    manifest: Any = {
        "files": [
            {
                "relative_path": path,
                "sha3_256": base64.b64encode(hashlib.sha3_256(files[path]).digest()).decode(),
            }
            for path in sorted(files)
        ]
    }
    assert ids.content_hash(files.items()) == compute_package_content_hash(manifest)


def test_the_api_is_switched_on_by_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().dlthub_compat is False
    assert Settings.from_env(dlthub_compat=True).dlthub_compat is True
    monkeypatch.setenv("DOCKYARD_DLTHUB_COMPAT", "1")
    assert Settings.from_env().dlthub_compat is True
    monkeypatch.setenv("DOCKYARD_DLTHUB_COMPAT", "off")
    assert Settings.from_env().dlthub_compat is False
