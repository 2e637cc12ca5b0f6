"""A real server, a real deploy of tests/workspaces/basic and a real Chromium (Playwright).

The browser is the system's Chromium (`tests/setup_machine.sh` installs it); Playwright never
downloads one. Without it the tests skip with a message, except in CI, where they fail. The
`chromium` fixture is in tests/conftest.py: one Playwright per test session (the apps' e2e
tests use it too).
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, WORKSPACES, Cli, Server, copy_workspace, make_server

WORKSPACE = "dash"
SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class Dash:
    """The deployed workspace: its server, CLI and local copy."""

    server: Server
    cli: Cli
    workspace_dir: Path

    def url(self, path: str = "") -> str:
        return f"{self.server.url}/ui/w/{WORKSPACE}{path}"


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory, cache_home: Path) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dash")
    server = make_server(tmp).start()
    cli = Cli(server, cache_home, tmp / "config", WORKSPACE)
    workspace_dir = copy_workspace(WORKSPACES / "basic", tmp / "basic")
    cli.run("deploy", cwd=workspace_dir)
    try:
        yield Dash(server, cli, workspace_dir)
    finally:
        server.stop()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) per test."""
    ctx = chromium.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


def log_in(page: Any, dash: Dash, token: str | None = None) -> None:
    page.goto(f"{dash.server.url}/ui/")
    page.fill("#token", token or dash.server.token)
    page.click("form[action='/ui/login'] button")
    page.wait_for_url(f"**/ui/w/{WORKSPACE}")


def screenshot(page: Any, name: str) -> None:
    """docs/screenshots/<name>.png, only with DOCKYARD_SCREENSHOTS=1 (the committed images
    come from one such run; ordinary runs leave the tree alone)."""
    if os.environ.get("DOCKYARD_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
