"""`dockyard audit`: the audit log (who deployed, launched, cancelled, paused, changed tokens,
keys or GitHub links), newest first. Without `-w`, everything the token may read."""

from typing import Any

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client
from dockyard.errors import InvalidInput

MAX_LIMIT = 500


def register(cli: click.Group) -> None:
    cli.add_command(audit)


@click.command()
@click.option("-w", "--workspace", default=None, help="Only this workspace's events.")
@click.option("--limit", default=50, show_default=True, help=f"Events to show (≤ {MAX_LIMIT}).")
@click.option("--before", type=int, default=None, help="Events older than this event id.")
@output.output_option
def audit(workspace: str | None, limit: int, before: int | None, output_fmt: str) -> None:
    """The audit log, newest first (`--before ID` pages back; `-o json` has `next_before`)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"--limit must be between 1 and {MAX_LIMIT}; got {limit}")
    client = Client(config.resolve())
    page: dict[str, Any] = client.get(
        "/api/v1/audit", workspace=workspace, before=before, limit=limit
    )
    if output_fmt == "json":
        output.emit_json(page)
        return
    _show(page)


def _show(page: dict[str, Any]) -> None:
    output.table(
        [
            [
                e["id"],
                output.when(e["at"]),
                e["actor_label"],
                e["workspace"],
                e["action"],
                e["target"],
                _detail(e["detail"]),
            ]
            for e in page["events"]
        ],
        ["id", "at", "actor", "workspace", "action", "target", "detail"],
    )
    if page.get("next_before"):
        click.echo(f"older events: dockyard audit --before {page['next_before']}")


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in detail.items())
