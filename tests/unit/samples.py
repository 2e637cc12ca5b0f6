"""Realistic inputs, shaped like what dlt 1.31 generates for `tests/workspaces/basic`.

Every builder returns a fresh deep copy, so a test may mutate what it gets.
"""

import copy
from typing import Any

JOB_LAUNCHER = "dlt._workspace.deployment.launchers.job"
DASHBOARD_LAUNCHER = "dlt._workspace.deployment.launchers.dashboard"
HELLO = "jobs.__deployment__.hello"
AFTER_HELLO = "jobs.__deployment__.after_hello"
SLEEPER = "jobs.__deployment__.sleeper"
TINY_API = "jobs.__deployment__.tiny_api"
DASHBOARD = "jobs.workspace.dashboard"

_HELLO: dict[str, Any] = {
    "engine_version": 2,
    "job_ref": HELLO,
    "entry_point": {
        "module": "__deployment__",
        "function": "hello",
        "job_type": "batch",
        "launcher": JOB_LAUNCHER,
    },
    "triggers": [],
    "execute": {"concurrency": 1},
    "expose": {"tags": ["quick"], "manual": True},
    "description": "Prints its configured greeting and the profile it runs with.",
    "config_keys": ["greeting"],
    "inputs": {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": False,
    },
}

_AFTER_HELLO: dict[str, Any] = {
    "engine_version": 2,
    "job_ref": AFTER_HELLO,
    "entry_point": {
        "module": "__deployment__",
        "function": "after_hello",
        "job_type": "batch",
        "launcher": JOB_LAUNCHER,
    },
    "triggers": [f"job.success:{HELLO}"],
    "execute": {"concurrency": 1},
    "expose": {"tags": ["quick"], "manual": True},
}

_SLEEPER: dict[str, Any] = {
    "engine_version": 2,
    "job_ref": SLEEPER,
    "entry_point": {
        "module": "__deployment__",
        "function": "sleeper",
        "job_type": "batch",
        "launcher": JOB_LAUNCHER,
    },
    "triggers": [],
    "execute": {"timeout": {"timeout": 3, "grace_period": 1}, "concurrency": 1},
    "expose": {"manual": True},
}

_TINY_API: dict[str, Any] = {
    "engine_version": 2,
    "job_ref": TINY_API,
    "entry_point": {
        "module": "__deployment__",
        "function": "tiny_api",
        "job_type": "interactive",
        "launcher": JOB_LAUNCHER,
    },
    "triggers": ["http:"],
    "execute": {"concurrency": 1},
    "expose": {"interface": "rest_api", "manual": True},
    "description": "A stdlib HTTP server on the port the runtime assigns.",
    "default_trigger": "http:",
}

_DASHBOARD: dict[str, Any] = {
    "engine_version": 2,
    "job_ref": DASHBOARD,
    "entry_point": {
        "module": "dlt._workspace.helpers.dashboard.dlt_dashboard",
        "function": None,
        "job_type": "interactive",
        "launcher": DASHBOARD_LAUNCHER,
    },
    "expose": {"interface": "gui", "category": "dashboard", "manual": True},
    "triggers": ["http:"],
    "execute": {"concurrency": 1},
    "require": {"dependency_groups": [DASHBOARD]},
    "description": "Workspace dashboard",
    "default_trigger": "http:",
}

_JOBS = {
    HELLO: _HELLO,
    AFTER_HELLO: _AFTER_HELLO,
    SLEEPER: _SLEEPER,
    TINY_API: _TINY_API,
    DASHBOARD: _DASHBOARD,
}

_REQUIREMENTS: dict[str, Any] = {
    "engine_version": 2,
    "python_version": "3.11",
    "dlt_version": {"name": "dlt", "extras": [], "version": "1.31.0", "mode": "pypi"},
    "default_groups": ["main"],
    "groups": {
        "agent-loop-claude-agent-sdk": ["claude-agent-sdk"],
        "jobs.workspace.dashboard": ["ibis-framework", "marimo", "pyarrow", "s3fs"],
        "main": ["dlt==1.31.0", "duckdb"],
        "reports": ["tabulate"],
    },
    "launcher_requirements": {
        JOB_LAUNCHER: ["botocore", "dlthub", "s3fs"],
        "dlt._workspace.deployment.launchers.marimo": ["dlthub", "marimo", "uvicorn"],
        DASHBOARD_LAUNCHER: ["dlthub"],
    },
}

# one pipeline run as dlt's trace serializes it (the fields `beacon.load_summary` reads, plus
# the kind of noise around them that it must ignore)
_TRACE: dict[str, Any] = {
    "transaction_id": "6a0c1d6b7d4f0e2a",
    "pipeline_name": "numbers_pipeline",
    "started_at": "2026-03-04T10:00:00.100000+00:00",
    "finished_at": "2026-03-04T10:00:02.500000+00:00",
    "steps": [
        {
            "span_id": "a1",
            "step": "extract",
            "started_at": "2026-03-04T10:00:00.200000+00:00",
            "finished_at": "2026-03-04T10:00:00.900000+00:00",
            "extract_info": {"pipeline": {"pipeline_name": "numbers_pipeline"}},
        },
        {
            "span_id": "a2",
            "step": "normalize",
            "started_at": "2026-03-04T10:00:01.000000+00:00",
            "finished_at": "2026-03-04T10:00:01.500000+00:00",
            "normalize_info": {
                "row_counts": {"numbers": 5, "_dlt_pipeline_state": 1},
                "table_metrics": [
                    {"table_name": "numbers", "items_count": 3, "file_size": 120},
                    {"table_name": "_dlt_pipeline_state", "items_count": 1, "file_size": 80},
                    {"table_name": "numbers", "items_count": 2, "file_size": 90},
                ],
            },
        },
        {
            "span_id": "a3",
            "step": "load",
            "started_at": "2026-03-04T10:00:01.600000+00:00",
            "finished_at": "2026-03-04T10:00:02.400000+00:00",
            "load_info": {
                "destination_name": "duckdb",
                "destination_type": "dlt.destinations.duckdb",
                "dataset_name": "numbers",
                "loads_ids": ["1772618400.123"],
            },
        },
        {
            "span_id": "a4",
            "step": "run",
            "started_at": "2026-03-04T10:00:00.100000+00:00",
            "finished_at": "2026-03-04T10:00:02.500000+00:00",
        },
    ],
}


def job(ref: str) -> dict[str, Any]:
    """One job definition of the basic workspace, by job ref."""
    return copy.deepcopy(_JOBS[ref])


def manifest(*refs: str) -> dict[str, Any]:
    """A stored (canonical) manifest holding the given jobs, in that order."""
    return {
        "engine_version": 2,
        "deployment_module": "__deployment__",
        "description": "Basic test workspace: quick, failing, slow and pipeline jobs.",
        "jobs": [job(ref) for ref in refs],
    }


def requirements() -> dict[str, Any]:
    """A `requirements.json` as dlt's `export_workspace_requirements` writes it."""
    return copy.deepcopy(_REQUIREMENTS)


def trace() -> dict[str, Any]:
    return copy.deepcopy(_TRACE)


_STATE: dict[str, Any] = {
    # dlt's `state` beacon payload (abbreviated): the pipeline and its schemas
    "pipeline_name": "numbers_pipeline",
    "destination_name": "duckdb",
    "dataset_name": "numbers",
    "schemas": [
        {
            "name": "numbers_pipeline",
            "version": 2,
            "tables": {
                "_dlt_loads": {
                    "name": "_dlt_loads",
                    "columns": {"load_id": {"name": "load_id", "data_type": "text"}},
                    "write_disposition": "skip",
                },
                "numbers": {
                    "name": "numbers",
                    "columns": {
                        "n": {"name": "n", "data_type": "bigint", "nullable": True},
                        "_dlt_id": {"name": "_dlt_id", "data_type": "text", "nullable": False},
                    },
                    "write_disposition": "append",
                },
            },
        }
    ],
}


def state() -> dict[str, Any]:
    return copy.deepcopy(_STATE)
