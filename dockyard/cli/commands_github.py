"""`workspace link-github`, `workspace unlink-github`, and the GitHub lines of `info`.

The token never appears on a command line (shell history, `ps`): `--token-env VAR` names the
variable that holds it; the CLI reads it and sends it once, over the API, to a server that
stores it sealed. The webhook secret the server generates is printed here, once.

With a GitHub App (`--app-id`, `--private-key-file`) the key file is read here and sent the
same way; the App's one webhook URL and secret are printed only when the server stores the
App (its first link), to paste into the App's settings.
"""

import os
from pathlib import Path
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
    metavar="VAR",
    help="Environment variable holding a GitHub token that can read the repository.",
)
@click.option("--app-id", type=int, help="A GitHub App's id (instead of --token-env).")
@click.option(
    "--private-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The GitHub App's private key (.pem), with --app-id.",
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
    token_env: str | None,
    app_id: int | None,
    private_key_file: Path | None,
    api_url: str,
    create_webhook: bool,
    output_fmt: str,
) -> None:
    """Link WORKSPACE to a GitHub repository (admin) with a token or a GitHub App; creates
    its webhook on GitHub, or prints what to paste there."""
    client = Client(config.resolve(workspace=workspace))
    body: dict[str, Any] = {"repo": repo, "branch": branch, "path": path, "api_url": api_url}
    body.update(_credential(token_env, app_id, private_key_file))
    data = client.post(f"{client.ws}/github", {**body, "create_webhook": create_webhook})
    if output_fmt == "json":
        output.emit_json(data)
        return
    where = f"{data['repo']}@{data['branch']}" + (f":{data['path']}" if data["path"] else "")
    click.echo(f"workspace {data['workspace']!r} linked to {where}")
    if data.get("credential_kind") == "app":
        _echo_app(data)
        return
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


def _credential(token_env: str | None, app_id: int | None, key_file: Path | None) -> dict[str, Any]:
    """The request's credential: a token from the environment, or an App's id and key."""
    if token_env is not None and (app_id is not None or key_file is not None):
        raise InvalidInput("give --token-env or --app-id with --private-key-file, not both")
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise InvalidInput(f"${token_env} is empty; export the GitHub token in it first")
        return {"token": token}
    if app_id is None or key_file is None:
        raise InvalidInput(
            "give --token-env VAR, or --app-id N with --private-key-file PEM (a GitHub App)"
        )
    try:
        with key_file.open("rb") as handle:
            pem = handle.read(16385).decode()  # the server refuses more than 16 KiB
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not text"
        raise InvalidInput(
            f"cannot read --private-key-file {key_file} ({why}): give the .pem file GitHub"
            " generated for the App"
        ) from None
    return {"app_id": app_id, "private_key": pem}


def _echo_app(data: dict[str, Any]) -> None:
    click.echo(f"through GitHub App {data['app_id']} (installation {data['installation_id']})")
    if not data.get("app_created"):
        click.echo(f"the App's webhook is already set up: {data['app_webhook_url']}")
        click.echo("(its secret was shown when the App was first linked; nothing to paste)")
        return
    click.echo("set the App's webhook in its settings (General > Webhook) to:")
    click.echo(f"  Webhook URL     {data['app_webhook_url']}")
    click.echo(f"  Webhook secret  {data['webhook_secret']}")
    click.echo("  and subscribe it to the events Push and Pull request")
    click.echo("the secret is shown only now, for every link made with this App")


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
    elif data.get("credential_kind") == "app":
        click.echo(data.get("webhook_reason") or "the GitHub App's webhook stays")
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
