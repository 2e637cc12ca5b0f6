"""`dockyard alert …`: a workspace's alert channels (docs/alerts.md) — add a webhook, a
Slack incoming webhook or e-mail, list, remove, send a test, and the delivery records.

Secrets never go on a command line (shell history, `ps`): `--secret-env`, `--url-env`
(a Slack webhook URL is a credential) and `--password-env` name the variable that holds
them; the CLI reads it and sends it once to the server, which stores it sealed.
"""

import os
import sys
from typing import Any
from urllib.parse import quote

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client
from dockyard.errors import InvalidInput

EVENTS = ("failed", "timeout", "lost", "recovered")


def register(cli: click.Group) -> None:
    cli.add_command(alert)


@click.group()
def alert() -> None:
    """Alert channels: where failed, timed-out, lost and recovered runs are told."""


def events_option(func: Any) -> Any:
    return click.option(
        "--event",
        "events",
        multiple=True,
        type=click.Choice(EVENTS),
        help="An event the channel wants (repeat it); default: all four.",
    )(func)


def _secret_from(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var, "").strip()
    if not value:
        raise InvalidInput(f"${var} is empty; export the {what} in it first")
    return value


def _add(workspace: str | None, body: dict[str, Any], output_fmt: str) -> None:
    client = Client(config.resolve(workspace=workspace))
    data = client.post(f"{client.ws}/alerts", {k: v for k, v in body.items() if v is not None})
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"alert channel {data['name']!r} ({data['kind']}) added to {data['workspace']!r}")
    click.echo(f"  sends to  {data['target']}")
    click.echo(f"  events    {', '.join(data['events'])}")
    if data.get("webhook_secret"):
        click.echo(f"  secret    {data['webhook_secret']}")
        click.echo("the signing secret is shown only now: give it to the receiver (docs/alerts.md)")
    click.echo(f"try it: dockyard alert test {data['name']}")


@alert.command("add-webhook")
@click.argument("name")
@click.option("--url", required=True, help="Where the signed JSON is POSTed.")
@click.option(
    "--secret-env",
    metavar="VAR",
    help="Variable holding the signing secret (16+ characters); default: the server makes one.",
)
@events_option
@output.workspace_option
@output.output_option
def add_webhook(
    name: str,
    url: str,
    secret_env: str | None,
    events: tuple[str, ...],
    workspace: str | None,
    output_fmt: str,
) -> None:
    """Add a generic JSON webhook NAME, signed with HMAC-SHA256 (admin)."""
    body = {"name": name, "kind": "webhook", "url": url, "events": list(events) or None}
    body["secret"] = _secret_from(secret_env, "webhook signing secret")
    _add(workspace, body, output_fmt)


@alert.command("add-slack")
@click.argument("name")
@click.option(
    "--url-env",
    metavar="VAR",
    required=True,
    help="Variable holding the Slack incoming-webhook URL (a credential: stored sealed).",
)
@events_option
@output.workspace_option
@output.output_option
def add_slack(
    name: str, url_env: str, events: tuple[str, ...], workspace: str | None, output_fmt: str
) -> None:
    """Add a Slack incoming webhook NAME (admin)."""
    url = _secret_from(url_env, "Slack incoming-webhook URL")
    body = {"name": name, "kind": "slack", "url": url, "events": list(events) or None}
    _add(workspace, body, output_fmt)


@alert.command("add-email")
@click.argument("name")
@click.option("--host", required=True, help="The SMTP server.")
@click.option("--port", type=int, help="Default: 587 (starttls), 465 (ssl), 25 (none).")
@click.option(
    "--security",
    type=click.Choice(["starttls", "ssl", "none"]),
    default="starttls",
    show_default=True,
)
@click.option("--username", help="Log in as this user.")
@click.option("--password-env", metavar="VAR", help="Variable holding the SMTP password.")
@click.option("--from", "sender", required=True, help="The sender address.")
@click.option("--to", "to", multiple=True, required=True, help="A recipient (repeat it).")
@events_option
@output.workspace_option
@output.output_option
def add_email(
    name: str,
    host: str,
    port: int | None,
    security: str,
    username: str | None,
    password_env: str | None,
    sender: str,
    to: tuple[str, ...],
    events: tuple[str, ...],
    workspace: str | None,
    output_fmt: str,
) -> None:
    """Add e-mail through SMTP NAME (admin)."""
    body = {
        "name": name,
        "kind": "email",
        "host": host,
        "port": port,
        "security": security,
        "username": username,
        "password": _secret_from(password_env, "SMTP password"),
        "sender": sender,
        "to": list(to),
        "events": list(events) or None,
    }
    _add(workspace, body, output_fmt)


@alert.command("list")
@output.workspace_option
@output.output_option
def list_channels(workspace: str | None, output_fmt: str) -> None:
    """The workspace's alert channels (never a secret's value)."""
    client = Client(config.resolve(workspace=workspace))
    data = client.get(f"{client.ws}/alerts")
    if output_fmt == "json":
        output.emit_json(data)
        return
    rows = [[c["name"], c["kind"], c["events"], c["target"], c["secret"]] for c in data]
    output.table(rows, ["name", "kind", "events", "sends to", "secret"])


@alert.command("remove")
@click.argument("name")
@output.workspace_option
@output.output_option
def remove(name: str, workspace: str | None, output_fmt: str) -> None:
    """Remove the alert channel NAME; its delivery records stay."""
    client = Client(config.resolve(workspace=workspace))
    data = client.delete(f"{client.ws}/alerts/{quote(name, safe='')}")
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"alert channel {data['name']!r} removed from {data['workspace']!r}")


@alert.command("test")
@click.argument("name")
@output.workspace_option
@output.output_option
def test(name: str, workspace: str | None, output_fmt: str) -> None:
    """Send a test message through NAME now and say whether it arrived (exit 1 if not)."""
    client = Client(config.resolve(workspace=workspace))
    data = client.post(f"{client.ws}/alerts/{quote(name, safe='')}/test")
    if output_fmt == "json":
        output.emit_json(data)
    elif data["status"] == "sent":
        click.echo(f"test alert sent through {name!r}")
    else:
        click.echo(f"test alert not sent through {name!r}: {data['last_error']}", err=True)
    if data["status"] != "sent":
        sys.exit(1)


@alert.command("deliveries")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@output.workspace_option
@output.output_option
def deliveries(limit: int, workspace: str | None, output_fmt: str) -> None:
    """The newest alert delivery records: each alert, its attempts and its last error."""
    client = Client(config.resolve(workspace=workspace))
    data = client.get(f"{client.ws}/alert-deliveries", limit=limit)
    if output_fmt == "json":
        output.emit_json(data)
        return
    rows = [
        [
            d["id"],
            output.when(d["created_at"]),
            d["channel"],
            d["event"],
            f"{d['job']} #{d['run_number']}" if d["job"] else "-",
            d["status"],
            d["attempts"],
            d["last_error"],
        ]
        for d in data
    ]
    output.table(rows, ["id", "created", "channel", "event", "run", "status", "tries", "error"])
