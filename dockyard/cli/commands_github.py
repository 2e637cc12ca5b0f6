"""`workspace link-github`, `workspace unlink-github`, and the GitHub lines of `info`.

The token never appears on a command line (shell history, `ps`): `--token-env VAR` names the
variable that holds it; the CLI reads it and sends it once, over the API, to a server that
stores it sealed. The webhook secret the server generates is printed here, once.
"""

import os
from typing import Any

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client
from dockyard.errors import InvalidInput


def register(group: click.Group) -> None:
    group.add_command(link_github)
    group.add_command(unlink_github)


@click.command("link-github")
@click.argument("workspace")
@click.option("--repo", required=True, help="The GitHub repository, OWNER/NAME.")
@click.option("--branch", default="main", show_default=True, help="The branch that deploys.")
@click.option("--path", default="", help="The workspace's folder in the repository.")
@click.option(
    "--token-env",
    required=True,
    metavar="VAR",
    help="Environment variable holding a GitHub token that can read the repository.",
)
@click.option(
    "--api-url",
    default="https://api.github.com",
    show_default=True,
    help="GitHub's REST API (GitHub Enterprise: https://HOST/api/v3).",
)
@click.option(
    "--create-webhook/--no-create-webhook",
    default=True,
    show_default=True,
    help="Create the webhook on GitHub with the token (needs `Webhooks: write`); else print"
    " what to paste.",
)
@output.output_option
def link_github(
    workspace: str,
    repo: str,
    branch: str,
    path: str,
    token_env: str,
    api_url: str,
    create_webhook: bool,
    output_fmt: str,
) -> None:
    """Link WORKSPACE to a GitHub repository (admin); creates its webhook on GitHub, or
    prints what to paste there."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise InvalidInput(f"${token_env} is empty; export the GitHub token in it first")
    client = Client(config.resolve(workspace=workspace))
    body = {"repo": repo, "branch": branch, "path": path, "api_url": api_url, "token": token}
    data = client.post(f"{client.ws}/github", {**body, "create_webhook": create_webhook})
    if output_fmt == "json":
        output.emit_json(data)
        return
    where = f"{data['repo']}@{data['branch']}" + (f":{data['path']}" if data["path"] else "")
    click.echo(f"workspace {data['workspace']!r} linked to {where}")
    if data.get("webhook_created"):
        click.echo(f"created the webhook on GitHub (id {data.get('github_hook_id')}):")
        click.echo(f"  Payload URL   {data['webhook_url']}")
        click.echo("  Events        push and pull requests; nothing to paste")
        return
    if create_webhook:
        click.echo(f"could not create the webhook on GitHub: {data.get('webhook_reason')}")
    click.echo("create a webhook in the repository's Settings > Webhooks with:")
    click.echo(f"  Payload URL   {data['webhook_url']}")
    click.echo("  Content type  application/json")
    click.echo(f"  Secret        {data['webhook_secret']}")
    click.echo("  Events        push and pull requests")
    click.echo("the secret is shown only now; to get a new one, unlink and link again")


@click.command("unlink-github")
@click.argument("workspace")
@output.output_option
def unlink_github(workspace: str, output_fmt: str) -> None:
    """Remove WORKSPACE's GitHub link (admin); then delete the webhook on GitHub."""
    client = Client(config.resolve(workspace=workspace))
    data = client.delete(f"{client.ws}/github")
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"workspace {data['workspace']!r} is no longer linked to {data['repo']}")
    if data.get("webhook_deleted"):
        click.echo("deleted the webhook dockyard had created on GitHub")
    else:
        why = data.get("webhook_reason") or "dockyard did not create it"
        click.echo(f"delete the webhook in the repository's Settings > Webhooks too ({why})")


def info_pairs(link: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """`info`'s lines about the link (never a token or secret: the API has none)."""
    if link is None:
        return [("github", "not linked")]
    where = f"{link['repo']}@{link['branch']}" + (f":{link['path']}" if link["path"] else "")
    last = link.get("last_delivery")
    delivery = "-"
    if last:
        delivery = f"{last['delivery_id']} {last['event']} {last['status']}"
        delivery += f": {last['outcome']}" if last.get("outcome") else ""
    return [
        ("github", where),
        ("webhook url", link["webhook_url"]),
        ("last delivery", delivery),
        ("last processed head", output.short(link["last_processed_head"])),
    ]
