"""`dockyard worker …`: the nodes that hold runs — controllers (`dockyard server`) today,
workers once they exist — with their pools, slots in use and heartbeats (docs/cli.md)."""

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client


def register(cli: click.Group) -> None:
    cli.add_command(worker)


@click.group()
def worker() -> None:
    """Controllers and workers: who holds runs, and whether they are alive."""


@worker.command("list")
@output.output_option
def list_workers(output_fmt: str) -> None:
    """Every node: kind, pool, labels, slots in use, last heartbeat, alive or lost."""
    client = Client(config.resolve())
    data = client.get("/api/v1/workers")
    if output_fmt == "json":
        output.emit_json(data)
        return
    rows = [
        [
            n["name"],
            n["kind"],
            n["pool"] or "-",
            ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items())) or "-",
            f"{n['slots_in_use']}/{'-' if n['slots'] is None else n['slots']}",
            output.when(n["last_heartbeat_at"]),
            n["state"],
        ]
        for n in data
    ]
    output.table(rows, ["name", "kind", "pool", "labels", "slots", "last heartbeat", "state"])
