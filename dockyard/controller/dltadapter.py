"""The one module that calls dlt's deployment helpers.

dlt 1.31 owns the semantics of manifests, triggers, selectors and entry points
(`dlt._workspace.deployment`, private API). Everything else in dockyard calls these wrappers,
so a dlt upgrade touches this file only. dlt is a library here: no workspace code is imported.
"""

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from dlt._workspace.deployment import _job_ref, _run_helpers, _trigger_helpers
from dlt._workspace.deployment import exceptions as dlt_exceptions
from dlt._workspace.deployment import manifest as dlt_manifest

from dockyard.errors import InvalidInput, NotFound

JobDef = dict[str, Any]
Manifest = dict[str, Any]

DEPLOYMENT_MODULE = "__deployment__"
DLT_PACKAGE_PREFIX = "dlt."


def validate_manifest(manifest: Manifest) -> tuple[list[str], list[str]]:
    """dlt's own validation: `(errors, warnings)`; never raises for a bad manifest."""
    try:
        result = dlt_manifest.validate_manifest(cast(Any, manifest))
    except (NotImplementedError, dlt_exceptions.DeploymentException, ValueError) as exc:
        return [str(exc)], []
    except (KeyError, TypeError, AttributeError) as exc:
        return [f"malformed manifest: {exc!r}"], []
    return list(result.errors), list(result.warnings)


def job_hash(job_def: JobDef) -> str:
    return str(dlt_manifest.hash_job_definition(cast(Any, job_def)))


def expand_triggers(job_def: JobDef) -> list[str]:
    """Stored triggers plus the synthetic `tag:`, `manual:` and `pipeline_name:` ones."""
    return [str(t) for t in dlt_manifest.expand_triggers(cast(Any, job_def))]


def default_trigger(job_def: JobDef) -> str | None:
    trigger = dlt_manifest.compute_default_trigger(cast(Any, job_def))
    return None if trigger is None else str(trigger)


@functools.lru_cache(maxsize=4096)  # pure; cron parsing made job lists slow
def humanize_trigger(trigger: str) -> str:
    return str(_trigger_helpers.humanize_trigger(cast(Any, trigger)))


@functools.lru_cache(maxsize=4096)  # pure; parsing validates the cron (slow in bursts)
def trigger_type(trigger: str) -> str:
    return str(_trigger_helpers.parse_trigger(cast(Any, trigger)).type)


def is_selector(text: str) -> bool:
    return bool(_trigger_helpers.is_selector(text))


def match_job(job_def: JobDef, selectors: Sequence[str]) -> str | None:
    """The trigger a job fires with for these selectors, or None when it is not selected."""
    found = match_trigger(job_def, selectors)
    return None if found is None else found[1]


def match_trigger(job_def: JobDef, selectors: Sequence[str]) -> tuple[str, str] | None:
    """`(matched, fires)`: the trigger the selectors matched and the one the job fires with,
    or None when it is not selected.

    Same rules as dlt's `select_candidates`: expand triggers, fnmatch, prefer the default
    trigger, and replace a picked `manual:` trigger by the job's default trigger (so the two
    differ only then).
    """
    job_type = job_def["entry_point"]["job_type"]
    hits = _trigger_helpers.match_triggers_with_selectors(
        job_type,
        dlt_manifest.expand_triggers(cast(Any, job_def)),
        list(selectors),
        job_ref=job_def["job_ref"],
    )
    picked = _trigger_helpers.pick_trigger(hits, job_def.get("default_trigger"))
    if picked is None:
        return None
    if str(picked).startswith("manual:"):
        default = default_trigger(job_def)
        if default is not None:
            return str(picked), default
    return str(picked), str(picked)


def selects_job(job_def: JobDef, selector: str) -> bool:
    """dlt's `selects_job`: the selector picks the job by its type, a trigger or its ref."""
    return bool(dlt_manifest.selects_job(cast(Any, job_def), selector))


def resolve_job_ref(name: str, job_refs: Sequence[str]) -> str:
    """`name`, `section.name` or `jobs.section.name` → the one job ref it names."""
    try:
        return str(_job_ref.resolve_job_ref(name, cast(Any, list(job_refs))))
    except dlt_exceptions.AmbiguousJobRef as exc:
        raise InvalidInput(f"{name!r} is ambiguous: {exc}; use the full job ref") from exc
    except (dlt_exceptions.JobRefNotFound, dlt_exceptions.InvalidJobRef) as exc:
        raise NotFound(
            f"no job {name!r} in this workspace; `dockyard job list` shows the jobs"
        ) from exc


def short_name(job_ref: str) -> str:
    return str(_job_ref.short_name(job_ref))


def build_entry_point(
    job_def: JobDef,
    *,
    profile: str | None,
    refresh: bool,
    interval_start: datetime | None,
    interval_end: datetime | None,
    dlt_version: dict[str, Any],
    run_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """dlt's `build_runtime_entry_point`, plus the interactive job's port/base path."""
    entry_point = dict(
        _run_helpers.build_runtime_entry_point(
            cast(Any, job_def),
            {},
            profile,
            refresh,
            interval_start,
            interval_end,
            cast(Any, dlt_version),
        )
    )
    if run_args is not None:
        entry_point["run_args"] = run_args
    return entry_point


def launcher_of(entry_point: dict[str, Any]) -> str:
    return str(_run_helpers.pick_launcher(cast(Any, entry_point)))


def refresh_for(job_def: JobDef, requested: bool) -> tuple[bool, str | None]:
    """Apply the job's refresh policy to a requested refresh: `(effective, warning)`."""
    effective, warning = _run_helpers.resolve_refresh(requested, cast(Any, job_def))
    return bool(effective), warning


def dlt_requirement(dlt_version: dict[str, Any]) -> str:
    """The PEP 508 line that installs exactly the dlt a deployment was made with."""
    from dlt._workspace.deployment import requirements as dlt_requirements

    return str(dlt_requirements.render_pep508(cast(Any, dlt_version), for_deployment=True))


def run_interval(
    job_def: JobDef, trigger: str, now: datetime, refresh: bool
) -> tuple[datetime, datetime]:
    """dlt's `resolve_interval` for a run fired now (no user-given bounds)."""
    start, end, _tz = _run_helpers.resolve_interval(
        None, None, cast(Any, job_def), cast(Any, trigger), now, refresh
    )
    return start, end


# scheduling -------------------------------------------------------------------------------
TIMED = ("schedule", "every", "once")


def job_timezone(job_def: JobDef) -> str:
    return str((job_def.get("require") or {}).get("timezone") or "UTC")


def timed_triggers(job_def: JobDef) -> list[str]:
    return [t for t in job_def.get("triggers") or [] if trigger_type(t) in TIMED]


@functools.lru_cache(maxsize=4096)
def trigger_period_s(trigger: str) -> float:
    """The period of an `every:` trigger, in seconds."""
    return float(cast(Any, _trigger_helpers.parse_trigger(cast(Any, trigger)).expr))


# pure functions of their arguments: a burst of jobs on one cron asks the same question
@functools.lru_cache(maxsize=2048)
def next_fire(trigger: str, now: datetime, tz: str, prev: datetime | None = None) -> datetime:
    """dlt's `next_scheduled_run`: the next tick strictly after `now` (cron in `tz`).

    dlt iterates cron on the naive wall clock and reads a repeated (fall-back) hour as its
    first occurrence, so asked from inside the second occurrence it can answer an instant
    before `now`; stepping on from that tick until it is in the future keeps "strictly
    after now" (each step moves forward on the wall clock, so this ends).
    """
    from dlt._workspace.deployment import interval

    result: datetime = interval.next_scheduled_run(cast(Any, trigger), now, tz, prev)
    for _ in range(1000):
        if result > now or trigger_type(trigger) != "schedule":
            break
        result = interval.next_scheduled_run(cast(Any, trigger), result, tz)
    return result


def once_at(trigger: str) -> datetime:
    """The instant of a `once:` trigger, in UTC."""
    from dlt.common.time import ensure_datetime_in_tz

    parsed = _trigger_helpers.parse_trigger(cast(Any, trigger))
    at: datetime = ensure_datetime_in_tz(cast(Any, parsed.expr), UTC)
    return at


@functools.lru_cache(maxsize=2048)
def natural_window(
    trigger: str, at: datetime, tz: str, prev_end: datetime | None = None
) -> tuple[datetime, datetime]:
    """dlt's `compute_run_interval`: for `schedule:` the latest elapsed cron interval."""
    from dlt._workspace.deployment import interval

    start, end = interval.compute_run_interval(cast(Any, trigger), at, prev_end, tz)
    return start, end


def declared_range(job_def: JobDef) -> tuple[datetime, datetime | None] | None:
    """A job's `interval` as UTC bounds, snapped back to cron ticks as dlt does; None
    when the job declares no interval. An open end stays None (it follows the ticks)."""
    from dlt._workspace.deployment import interval
    from dlt.common.time import ensure_datetime_in_tz

    spec = job_def.get("interval")
    if not spec:
        return None
    cron = _trigger_helpers.maybe_parse_schedule(cast(Any, job_def))
    if cron:
        start, end = interval.resolve_interval_spec(cast(Any, spec), cron, job_timezone(job_def))
        return start, (end if spec.get("end") else None)
    begin = ensure_datetime_in_tz(spec["start"], UTC)
    until = ensure_datetime_in_tz(spec["end"], UTC) if spec.get("end") else None
    return begin, until


def cron_floor(job_def: JobDef, at: datetime) -> datetime | None:
    """The latest cron tick ≤ `at` of the job's schedule (in its timezone), as UTC."""
    from zoneinfo import ZoneInfo

    from dlt._workspace.deployment import interval

    cron = _trigger_helpers.maybe_parse_schedule(cast(Any, job_def))
    if not cron:
        return None
    local = at.astimezone(ZoneInfo(job_timezone(job_def)))
    floor: datetime = interval.cron_floor(cron, local)
    return floor.astimezone(UTC)


def freshness_refs(job_def: JobDef) -> list[str]:
    from dlt._workspace.deployment import freshness

    return [
        str(freshness.parse_freshness_constraint(c).expr) for c in job_def.get("freshness") or []
    ]


def check_fresh(
    job_def: JobDef,
    upstream: dict[str, JobDef],
    prev_ends: dict[str, datetime | None],
    now: datetime,
) -> dict[str, str]:
    """dlt's `check_all_upstream_run_fresh`, per constraint: upstream ref → why it is not
    fresh (only the stale ones)."""
    from dlt._workspace.deployment import freshness, interval

    stale: dict[str, str] = {}
    for constraint in job_def.get("freshness") or []:
        ref = str(freshness.parse_freshness_constraint(constraint).expr)
        if ref not in upstream:  # archived or gone: dlt would fail to look it up
            stale[ref] = f"upstream {ref} is not deployed"
            continue
        ok, reasons = interval.check_all_upstream_run_fresh(
            [constraint], cast(Any, upstream), cast(Any, prev_ends), now
        )
        if not ok:
            stale[ref] = "; ".join(reasons)
    return stale


def cascade_targets(root_ref: str, jobs: dict[str, JobDef]) -> list[str]:
    """dlt's refresh cascade: freshness-downstream jobs of `root_ref`, `block` excluded."""
    from dlt._workspace.deployment import freshness

    return [str(r) for r in freshness.get_refresh_cascade_targets(root_ref, cast(Any, jobs))]


def refresh_policy(job_def: JobDef) -> str:
    from dlt._workspace.deployment.typing import resolve_refresh_propagation

    return str(resolve_refresh_propagation(job_def))
