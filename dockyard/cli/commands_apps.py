"""`app list`, `app link create|list|revoke`, and the wait behind `serve`.

Apps are interactive jobs, each served by the server on an origin of its own
(`http://<app>--<workspace>.<apps domain>:<port>/`); a public link (`<that origin>/p/<token>/`)
serves one app without login until it is revoked. The URLs come from the server.
"""

import http.client
import json
import time
import urllib.parse
from typing import Any

import click

from dockyard.cli import output, pagecheck
from dockyard.cli.client import Client
from dockyard.cli.commands_workspace import client_for
from dockyard.errors import Unavailable

POLL_S = 0.5
STATE_HEADER = "x-dockyard-app"


def register(cli: click.Group) -> None:
    cli.add_command(app)


def wait_served(
    client: Client, job: str, timeout_s: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the app (or find it running), wait until it answers through the server's proxy
    and check that its page can load (`pagecheck`); returns what the server said about the
    app (`url`, `mcp_url`) and its run."""
    served = client.post(f"{client.ws}/apps/{job}")
    url = str(served["url"])
    deadline = time.monotonic() + timeout_s
    while True:
        state, detail = _probe(url, client.target.token)
        if state == "answering":
            break
        if state == "failed":
            raise Unavailable(f"{detail}")
        if time.monotonic() > deadline:
            raise Unavailable(
                f"{served['job_ref']} did not answer within {timeout_s:.0f}s ({detail});"
                f" `dockyard logs {served['name']}` shows what it is doing"
            )
        time.sleep(POLL_S)
    served = client.post(f"{client.ws}/apps/{job}")  # the instance that answered
    if not served.get("mcp_url"):
        problem = pagecheck.problem(url, client.target.token)
        if problem is not None:
            raise Unavailable(f"{served['job_ref']} answers, but {problem}")
    run: dict[str, Any] = client.get(f"/api/v1/runs/{served['run_id']}")
    return served, run


def _probe(url: str, token: str | None) -> tuple[str, str]:
    """`answering` (any answer from the app itself), `starting` or `failed` (the proxy's own
    answers while the app is not there), with what the proxy said."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    connection = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        pagecheck.address(parts), timeout=10
    )
    headers = {"Accept": "application/json", "Host": parts.netloc}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("GET", parts.path or "/", headers=headers)
        response = connection.getresponse()
        state = response.getheader(STATE_HEADER)
        body = response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        return "starting", f"the server did not answer: {exc}"
    finally:
        connection.close()
    if state is None:
        return "answering", ""
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return ("failed" if state == "failed" else "starting"), message


@click.group()
def app() -> None:
    """Apps (interactive jobs), each on an origin of its own, and their public links."""


@app.command("list")
@output.workspace_option
@output.output_option
def app_list(workspace: str | None, output_fmt: str) -> None:
    """The workspace's apps: status, running run, URL, active public links."""
    client = client_for(workspace)
    data = client.get(f"{client.ws}/apps")
    if output_fmt == "json":
        output.emit_json(data)
        return
    output.table(
        [
            [
                a["name"],
                a["interface"],
                a["status"],
                a["number"],
                a["url"] or a["url_problem"],
                a["public_links"],
            ]
            for a in data
        ],
        ["app", "interface", "status", "run", "url", "links"],
    )


@app.group("link")
def link() -> None:
    """Public links: a URL that serves one app without login, until revoked."""


@link.command("create")
@click.argument("job")
@click.option("--note", default=None, help="What the link is for (shown in `link list`).")
@output.workspace_option
@output.output_option
def link_create(job: str, note: str | None, workspace: str | None, output_fmt: str) -> None:
    """Make a public link to JOB's app; the URL is printed once."""
    client = client_for(workspace)
    data = client.post(f"{client.ws}/apps/{job}/links", {"note": note})
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(data["url"])
    click.echo(
        f"public link {data['id']} to {data['job_ref']}: anyone with the URL can use the app;"
        f" shown once. Revoke: dockyard app link revoke {job} {data['id']}",
        err=True,
    )


@link.command("list")
@click.argument("job")
@output.workspace_option
@output.output_option
def link_list(job: str, workspace: str | None, output_fmt: str) -> None:
    """JOB's public links (the token's first characters only)."""
    client = client_for(workspace)
    data = client.get(f"{client.ws}/apps/{job}/links")
    if output_fmt == "json":
        output.emit_json(data)
        return
    output.table(
        [
            [
                d["id"],
                d["prefix"] + "…",
                d["note"],
                output.when(d["created_at"]),
                output.when(d["revoked_at"]),
            ]
            for d in data
        ],
        ["id", "token", "note", "created", "revoked"],
    )


@link.command("revoke")
@click.argument("job")
@click.argument("link_id", type=int, required=False)
@output.workspace_option
@output.output_option
def link_revoke(job: str, link_id: int | None, workspace: str | None, output_fmt: str) -> None:
    """Revoke one of JOB's public links (LINK_ID), or all of them; it stops working at once."""
    client = client_for(workspace)
    path = f"{client.ws}/apps/{job}/links" + (f"/{link_id}" if link_id is not None else "")
    data = client.delete(path)
    if output_fmt == "json":
        output.emit_json(data)
        return
    ids = ", ".join(str(r["id"]) for r in data["revoked"]) or "none (no active link)"
    click.echo(f"revoked: {ids}")
