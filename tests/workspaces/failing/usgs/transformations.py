"""Like the starter pack's usgs transformations: a dependency the workspace never declared."""

import json

import ibis_is_not_installed  # noqa: F401  (imported when a job first needs it)


def daily(rows: list[dict]) -> str:
    return json.dumps(rows)
