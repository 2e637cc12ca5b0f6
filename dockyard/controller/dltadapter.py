"""The one module that calls dlt's deployment helpers.

dlt 1.31 owns the semantics of manifests, triggers, selectors and entry points
(`dlt._workspace.deployment`, private API). Everything else in dockyard calls these wrappers,
so a dlt upgrade touches this file only. dlt is a library here: no workspace code is imported.
"""

from collections.abc import Sequence
from datetime import datetime
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


def humanize_trigger(trigger: str) -> str:
    return str(_trigger_helpers.humanize_trigger(cast(Any, trigger)))


def trigger_type(trigger: str) -> str:
    return str(_trigger_helpers.parse_trigger(cast(Any, trigger)).type)


def is_selector(text: str) -> bool:
    return bool(_trigger_helpers.is_selector(text))


def match_job(job_def: JobDef, selectors: Sequence[str]) -> str | None:
    """The trigger a job fires with for these selectors, or None when it is not selected.

    Same rules as dlt's `select_candidates`: expand triggers, fnmatch, prefer the default
    trigger, and replace a picked `manual:` trigger by the job's default trigger.
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
            return default
    return str(picked)


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
