"""`dockyard lease list`: which server process holds each named lease (the reconcile sweep,
retention, the GitHub sweeper), at which epoch and until when; admin. For operators of
several servers on one database (docs/scaling.md)."""

from typing import Any

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client


def register(cli: click.Group) -> None:
    cli.add_command(lease)


@click.group()
def lease() -> None:
    """The leases of the work that must happen once across servers."""


@lease.command("list")
@output.output_option
def list_leases(output_fmt: str) -> None:
    """Each lease: its holder, epoch and expiry (`held` by the answering server's clock)."""
    rows: list[dict[str, Any]] = Client(config.resolve()).get("/api/v1/leases")
    if output_fmt == "json":
        output.emit_json(rows)
        return
    output.table(
        [
            [
                r["name"],
                r["holder"] or "(released)",
                r["epoch"],
                "yes" if r["held"] else "no",
                output.when(r["expires_at"]),
            ]
            for r in rows
        ],
        ["lease", "holder", "epoch", "held", "expires"],
    )
