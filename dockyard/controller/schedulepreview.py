"""What deploying some job definitions would do to their schedules: old and new timed
triggers, the next fire time of each, and for interval jobs the window their next run would
cover. Read from the workspace's job rows and schedule ledger; nothing is written.

Shared by `deploy --dry-run` (through the API: `usecases.jobs.preview_schedules`) and the plan
of a pull request (`gitsource.plan_from_git`), so both show the same next runs.
"""

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dockyard.controller import dltadapter, runs
from dockyard.controller.lifecycle import facts, rules
from dockyard.controller.scheduling import state as schedules
from dockyard.controller.scheduling import ticks
from dockyard.controller.store.models import Job, Workspace


def preview(
    session: Session, ws: Workspace | None, jobs: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """One entry per definition whose timed triggers change (or that has an interval)."""
    existing = {j.job_ref: j for j in runs.jobs(session, ws, True)} if ws else {}
    out = []
    for definition in jobs:
        entry = _schedule_change(session, existing.get(definition["job_ref"]), definition, now)
        if entry is not None:
            out.append(entry)
    return out


def _schedule_change(
    session: Session, job: Job | None, definition: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    old = dltadapter.timed_triggers(job.definition) if job and job.status == "active" else []
    new = dltadapter.timed_triggers(definition)
    has_interval = bool(definition.get("interval"))
    if old == new and not has_interval:
        return None
    tz = dltadapter.job_timezone(definition)
    kept = {r.trigger: r.next_fire_at for r in schedules.for_job(session, job)} if job else {}
    next_fire = {
        t: (kept[t] if t in kept and t in old else ticks.first_fire(t, tz, now)) for t in new
    }
    entry: dict[str, Any] = {
        "job_ref": definition["job_ref"],
        "old_triggers": old,
        "new_triggers": new,
        "timezone": tz,
        "next_fire_at": {t: at.isoformat() if at else None for t, at in next_fire.items()},
        "next_window": None,
    }
    if has_interval:
        done = facts.completed_end(session, job) if job else None
        trigger = str(definition.get("default_trigger") or "manual:")
        decision = rules.window(definition, trigger, now, done, False)
        if decision.window is not None:
            entry["next_window"] = [
                decision.window.start.isoformat(),
                decision.window.end.isoformat(),
            ]
        entry["next_window_skip_reason"] = decision.skip_reason
    return entry
