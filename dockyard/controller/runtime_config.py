"""What a run gets from its job definition: profile, interval, timeout and grace period.

For interactive jobs (apps) the timeout is an idle window, not a lifetime: dlt stores
`@run.interactive(idle_timeout=…)` as `execute.timeout`, and an app is stopped once it has
had no proxied traffic and no open connection for that long (`controller/apps.py`). Without
a declared one, the server's `app_idle_s` applies. Runs of apps have no hard deadline.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard.controller import dltadapter


@dataclass(frozen=True, slots=True)
class Defaults:
    timeout_s: float
    grace_s: float
    idle_s: float = 300.0  # apps: the idle window when the job declares no idle_timeout


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
    fallback = defaults.idle_s if is_interactive(job_def) else defaults.timeout_s
    return (
        float(timeout) if timeout else fallback,
        float(grace) if grace is not None else defaults.grace_s,
    )


def is_interactive(job_def: dict[str, Any]) -> bool:
    return bool(job_def["entry_point"]["job_type"] == "interactive")


def interval(
    job_def: dict[str, Any], trigger: str, now: datetime, refresh: bool
) -> tuple[datetime, datetime]:
    """The window a triggered run covers, by dlt's rules (point-in-time for manual runs)."""
    return dltadapter.run_interval(job_def, trigger, now, refresh)
