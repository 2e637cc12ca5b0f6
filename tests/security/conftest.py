"""Attacks against a real server: each test is named for the attack it reproduces and
asserts that the attack failed and that nothing else broke (issue 10, docs/security.md)."""

import re
from pathlib import Path

import pytest

from tests.conftest import WORKSPACES, Cli, copy_workspace

PROBE = re.compile(r"^PROBE (\S+) (.*)$")


@pytest.fixture
def hostile_ws(tmp_path: Path) -> Path:
    """A fresh copy of the hostile workspace (tests/workspaces/hostile)."""
    return copy_workspace(WORKSPACES / "hostile", tmp_path / "hostile")


def probes(cli: Cli, run_id: str) -> dict[str, str]:
    """The `PROBE <name> <outcome>` lines a hostile run printed, by name (the whole log,
    page by page through the API)."""
    found: dict[str, str] = {}
    offset = 0
    while True:
        chunk = cli.server.api("GET", f"/api/v1/runs/{run_id}/logs", params={"offset": offset})
        chunk.raise_for_status()
        data = chunk.json()
        for line in data["lines"]:
            match = PROBE.match(str(line.get("m", "")))
            if match and line.get("s") != "sys":
                found[match.group(1)] = match.group(2)
        if data["next_offset"] == offset:
            return found
        offset = data["next_offset"]
