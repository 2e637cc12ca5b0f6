"""What a run gets from its job definition: profile, interval, timeout and grace period."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard.controller import dltadapter


@dataclass(frozen=True, slots=True)
class Defaults:
    timeout_s: float
    grace_s: float


def profile(job_def: dict[str, Any], config_files: Sequence[str]) -> str:
    """`require.profile` wins; batch jobs run `prod`; interactive ones `access`, else `prod`."""
    declared = job_def.get("require", {}).get("profile")
    if declared:
        return str(declared)
    if job_def["entry_point"]["job_type"] == "interactive" and any(
        name.startswith("access.") for name in config_files
    ):
        return "access"
    return "prod"


def timeouts(job_def: dict[str, Any], defaults: Defaults) -> tuple[float, float]:
    spec = (job_def.get("execute") or {}).get("timeout") or {}
    timeout = spec.get("timeout") if isinstance(spec, dict) else None
    grace = spec.get("grace_period") if isinstance(spec, dict) else None
    return (
        float(timeout) if timeout else defaults.timeout_s,
        float(grace) if grace is not None else defaults.grace_s,
    )


def interval(
    job_def: dict[str, Any], trigger: str, now: datetime, refresh: bool
) -> tuple[datetime, datetime]:
    """The window a triggered run covers, by dlt's rules (point-in-time for manual runs)."""
    return dltadapter.run_interval(job_def, trigger, now, refresh)
