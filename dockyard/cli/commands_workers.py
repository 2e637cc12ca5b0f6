"""`dockyard worker --server URL --token T …` runs the worker agent on this host
(`dockyard/worker/`); `dockyard worker list` shows the nodes that hold runs — controllers and
workers — with their pools, slots in use and heartbeats (docs/cli.md)."""

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client


def register(cli: click.Group) -> None:
    cli.add_command(worker)


@click.group(invoke_without_command=True)
@click.option("--server", "server_url", default=None, help="The server's URL (DOCKYARD_SERVER).")
@click.option("--token", default=None, help="A worker token (DOCKYARD_TOKEN).")
@click.option("--name", default=None, help="This worker's node name (default the host name).")
@click.option("--pool", default="default", show_default=True)
@click.option("--label", "labels", multiple=True, help="k=v, repeatable.")
@click.option("--executor", type=click.Choice(["local", "docker"]), default="local")
@click.option("--slots", type=click.IntRange(1, 1024), default=2, show_default=True)
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=10,
    show_default=True,
    help="Niceness of runs and environment builds (0: as the worker itself).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Mirrors, checkouts, environments, runs (default ~/.local/share/dockyard-worker).",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def worker(
    ctx: click.Context,
    server_url: str | None,
    token: str | None,
    name: str | None,
    pool: str,
    labels: tuple[str, ...],
    executor: str,
    slots: int,
    nice: int,
    data_dir: str | None,
    log_level: str,
) -> None:
    """Run batch runs on this host for a server (`--server URL --token T`), or, with a
    subcommand, list controllers and workers."""
    if ctx.invoked_subcommand is not None:
        return
    import os
    import signal
    import socket
    from pathlib import Path

    from dockyard.logsetup import configure
    from dockyard.worker.agent import Agent, Options

    server_url = server_url or os.environ.get("DOCKYARD_SERVER")
    token = token or os.environ.get("DOCKYARD_TOKEN")
    if not server_url or not token:
        raise click.UsageError(
            "give --server URL and --token T (a worker token: `dockyard token create NAME"
            " --role worker`), or a subcommand such as `list`"
        )
    configure(log_level)
    os.umask(0o077)
    options = Options(
        server=server_url,
        token=token,
        name=name or socket.gethostname(),
        pool=pool,
        labels=_labels(labels),
        executor=executor,
        slots=slots,
        nice=nice,
        data_dir=Path(data_dir or "~/.local/share/dockyard-worker").expanduser().absolute(),
    )

    def _stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    agent = Agent(options)
    click.echo(
        f"dockyard worker {options.name} (pool {pool}, {slots} slots, {executor}) for"
        f" {server_url}; data in {options.data_dir}",
        err=True,
    )
    try:
        agent.run()
    except KeyboardInterrupt:
        click.echo(
            "worker stopping: its running runs keep running (a restart adopts them)", err=True
        )
    if agent.fenced:
        raise click.ClickException("another process registered this worker's name: stopped")


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: write labels as key=value", param_hint="--label")
        found[key] = value
    return found


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
