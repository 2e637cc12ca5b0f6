"""`dockyard server`, `login`, `logout`, `token …`."""

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

import click

from dockyard.cli import config, output
from dockyard.cli.client import Client
from dockyard.settings import DEFAULT_PORT

GRACEFUL_S = 5  # at shutdown, how long open requests (event streams, proxied apps) may go on

if TYPE_CHECKING:
    from dockyard.controller.assembly import Controller
    from dockyard.settings import Settings


def register(cli: click.Group) -> None:
    cli.add_command(server)
    cli.add_command(login)
    cli.add_command(logout)
    cli.add_command(token)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="State directory (default ./.dockyard or DOCKYARD_DATA_DIR).",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    help="Database URL: postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE, or"
    " sqlite:///PATH (default: SQLite in --data-dir, or DOCKYARD_DB).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port", type=int, default=None, help=f"Port (default {DEFAULT_PORT} or DOCKYARD_PORT)."
)
@click.option(
    "--executor",
    type=click.Choice(["local", "docker"]),
    default=None,
    help="Where runs execute (default local, or DOCKYARD_EXECUTOR).",
)
@click.option(
    "--docker-base-image",
    default=None,
    help="Base image for run images; {python} stands for the deployment's Python version"
    " (default python:{python}-slim, or DOCKYARD_DOCKER_BASE_IMAGE).",
)
@click.option(
    "--no-embedded-runs",
    is_flag=True,
    help="This server runs no batch runs itself: `dockyard worker` hosts take them"
    " (DOCKYARD_EMBEDDED_RUNS=off); apps still run here.",
)
@click.option(
    "--placement",
    "placement_file",
    default=None,
    help="A TOML file mapping jobs' require.instance/region/provider to worker pools and"
    " labels (DOCKYARD_PLACEMENT; docs/scaling.md).",
)
@click.option(
    "--dlthub-compat",
    is_flag=True,
    help="Also serve the API the stock `dlthub` CLI calls, under /dlthub"
    " (DOCKYARD_DLTHUB_COMPAT=1; docs/dlthub-cli.md).",
)
@click.option("--log-level", default="info", show_default=True)
def server(
    data_dir: str | None,
    db_url: str | None,
    host: str,
    port: int | None,
    executor: str | None,
    docker_base_image: str | None,
    no_embedded_runs: bool,
    placement_file: str | None,
    dlthub_compat: bool,
    log_level: str,
) -> None:
    """Run the controller: API, git server, reconciler and runner in one process."""
    from dockyard.controller import app_origins
    from dockyard.controller.assembly import Controller, load_rules
    from dockyard.controller.store.db import safe_url
    from dockyard.logsetup import configure
    from dockyard.settings import Settings

    configure(log_level)
    # the data dir holds keys, the database and every workspace's repository and data:
    # whatever the server (and git, uv) creates there is the server's only (0700/0600)
    os.umask(0o077)
    settings = Settings.from_env(
        data_dir=data_dir,
        db_url=db_url,
        host=host,
        port=port,
        executor=executor,
        docker_base_image=docker_base_image,
        placement=placement_file,
    )
    if no_embedded_runs:
        settings = dataclasses.replace(settings, embedded_runs=False)
    if dlthub_compat:
        settings = dataclasses.replace(settings, dlthub_compat=True)
    apps = app_origins.check(settings)  # a bad DOCKYARD_APPS_DOMAIN: refused before anything
    load_rules(settings)  # a bad placement file too
    ctl = Controller(settings)
    if settings.start_loops:
        ctl.join()  # a live server with this node name: refused before anything listens
    generated = ctl.bootstrap()
    if generated:
        click.echo("=" * 72, err=True)
        click.echo("admin token (shown once, store it now; only its hash is kept):", err=True)
        click.echo(f"  {generated}", err=True)
        click.echo(f"  dockyard login --server {settings.base_url} --token {generated}", err=True)
        click.echo("=" * 72, err=True)
    click.echo(
        f"dockyard server on {settings.base_url} (data in {settings.data_dir},"
        f" database {safe_url(settings.database_url)},"
        f" API docs at {settings.base_url}/docs, executor {settings.executor});"
        f" apps at {apps.origin('<app>--<workspace>')}/",
        err=True,
    )
    click.echo(ctl.isolation.describe(), err=True)
    _serve(settings, ctl, log_level)


def _serve(settings: "Settings", ctl: "Controller", log_level: str) -> None:
    """The API, and with the Docker executor on a bridge network a second listener for the
    beacon only, on the host's address on that network (containers cannot reach loopback)."""
    import asyncio

    import uvicorn

    from dockyard.web.asgi import create_asgi, create_beacon_asgi

    access = logging.getLogger().level <= logging.DEBUG
    configs = [
        uvicorn.Config(
            create_asgi(settings, ctl),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=access,
            ws="websockets-sansio",  # apps' WebSockets (the proxy); fails loudly if missing
            proxy_headers=False,  # X-Forwarded-*: only from DOCKYARD_TRUSTED_PROXIES (web/origins)
            # an open dashboard tab (its event stream) must not hold the shutdown, and with
            # it the stop of the apps, until someone presses Ctrl-C again
            timeout_graceful_shutdown=GRACEFUL_S,
        )
    ]
    gateway = _beacon_host(settings, ctl)
    if gateway is not None:
        click.echo(f"beacon for containers on http://{gateway}:{settings.port}", err=True)
        configs.append(
            uvicorn.Config(
                create_beacon_asgi(ctl),
                host=gateway,
                port=settings.port,
                log_level=log_level,
                access_log=access,
                lifespan="off",
            )
        )

    async def serve_all() -> None:
        await asyncio.gather(*(uvicorn.Server(c).serve() for c in configs))

    # uvicorn's own choice of loop (`loop="auto"`: uvloop when installed), as `Server.run`
    # makes it; `asyncio.run` alone would always take the pure-Python loop
    with asyncio.Runner(loop_factory=configs[0].get_loop_factory()) as runner:
        try:
            runner.run(serve_all())
        finally:
            # a forced exit (Ctrl-C twice) skips the lifespan's end: the apps stop here then
            if settings.start_loops:
                ctl.stop()


def _beacon_host(settings: "Settings", ctl: "Controller") -> str | None:
    """The gateway address of the containers' network, when runs may go to Docker: it is the
    default executor, or an engine answers (a workspace may choose Docker at any time)."""
    if settings.docker_network == "host":
        return None
    if settings.host in ("0.0.0.0", "::"):  # noqa: S104 (already reachable from containers)
        return None
    from dockyard.controller.executors.docker import DockerExecutor
    from dockyard.errors import DockyardError

    docker = ctl.executor.get("docker")
    assert isinstance(docker, DockerExecutor)
    try:
        gateway = docker.gateway()
    except DockyardError as exc:
        if settings.executor == "docker":
            click.echo(
                f"warning: {exc.message}; runs in containers cannot report results", err=True
            )
        return None
    if not _is_local_address(gateway):
        # the engine is another network's (a network namespace sharing the host's Docker
        # socket, or a remote DOCKER_HOST): its bridge is not on this host's network
        if settings.executor == "docker":
            click.echo(
                f"warning: the Docker network's gateway {gateway} is not an address of this"
                " host; runs in containers cannot report results (serve on --host 0.0.0.0"
                " or DOCKYARD_DOCKER_NETWORK=host)",
                err=True,
            )
        return None
    return gateway


def _is_local_address(address: str) -> bool:
    """Whether this host has `address` (a listener can bind it)."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@click.command()
@click.option("--server", "server_url", default=None, help="e.g. http://127.0.0.1:8765")
@click.option("--token", default=None)
@click.option("-w", "--workspace", default=None, help="Default workspace to save.")
@click.option(
    "--github-oidc",
    is_flag=True,
    help="Inside GitHub Actions: exchange the job's OIDC token for a short-lived token on the"
    " workspace and pass it to later steps (GITHUB_ENV).",
)
@click.option("--audience", default=None, help="With --github-oidc: override the server's.")
def login(
    server_url: str | None,
    token: str | None,
    workspace: str | None,
    github_oidc: bool,
    audience: str | None,
) -> None:
    """Check a server and token, and save them as the CLI's default."""
    target = config.resolve(server_url, token, workspace)
    if not target.server:
        raise click.UsageError("give --server (or set DOCKYARD_SERVER)")
    if github_oidc:
        _login_github_oidc(target, audience)
        return
    if not token:
        raise click.UsageError("give --token (or --github-oidc inside GitHub Actions)")
    server = target.server
    saved = config.load_saved()
    me = Client(config.Target(server, token, workspace or "default", False)).get("/api/v1/me")
    saved.update(server=server, token=token)
    if workspace:
        saved["workspace"] = workspace
    path = config.save(saved)
    click.echo(f"logged in to {server} as a {me['role']} token; saved to {path}")


def _login_github_oidc(target: config.Target, audience: str | None) -> None:
    from dockyard.cli import github_oidc

    if not target.workspace_explicit:
        raise click.UsageError("give -w WORKSPACE (or set DOCKYARD_WORKSPACE)")
    assert target.server is not None
    got = github_oidc.login(target.server, target.workspace, audience)
    exported = github_oidc.export(got, target.server)
    where = "DOCKYARD_TOKEN in $GITHUB_ENV" if exported else "nowhere (GITHUB_ENV is not set)"
    click.echo(
        f"{got.role} token on workspace {got.workspace!r} until {got.expires_at}"
        f" ({got.name}); saved to {where}"
    )


@click.command()
def logout() -> None:
    """Forget the saved server and token."""
    saved = config.load_saved()
    saved.pop("token", None)
    saved.pop("server", None)
    config.save(saved)
    click.echo("logged out")


@click.group()
def token() -> None:
    """API tokens (admin only): create, list, revoke."""


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["read", "deploy", "admin", "worker"]),
    default="deploy",
    show_default=True,
)
@click.option("-w", "--workspace", default=None, help="Limit the token to one workspace.")
@click.option(
    "--dlthub",
    is_flag=True,
    help="A key the stock `dlthub` CLI accepts (prefix dlt_sa_; docs/dlthub-cli.md).",
)
@output.output_option
def token_create(
    name: str, role: str, workspace: str | None, dlthub: bool, output_fmt: str
) -> None:
    """Create a token; it is printed once."""
    client = Client(config.resolve())
    body = {"name": name, "role": role, "workspace": workspace, "dlthub": dlthub}
    data = client.post("/api/v1/tokens", body)
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"token {data['id']} ({data['role']}): {data['token']}")
    click.echo("shown once: store it now", err=True)
    if dlthub:
        click.echo(
            "for the dlthub CLI: RUNTIME__API_KEY=<this token>,"
            f" RUNTIME__API_BASE_URL={client.server}/dlthub and RUNTIME__WORKSPACE_ID"
            " (`dockyard workspace info` shows it; docs/dlthub-cli.md)",
            err=True,
        )


@token.command("list")
@output.output_option
def token_list(output_fmt: str) -> None:
    data = Client(config.resolve()).get("/api/v1/tokens")
    if output_fmt == "json":
        output.emit_json(data)
        return
    output.table(
        [
            [
                t["id"],
                t["name"],
                t["prefix"] + "…",
                t["role"],
                t["workspace"],
                output.when(t["created_at"]),
                output.when(t["revoked_at"]),
                output.when(t.get("expires_at")),
            ]
            for t in data
        ],
        ["id", "name", "prefix", "role", "workspace", "created", "revoked", "expires"],
    )


@token.command("revoke")
@click.argument("token_id", type=int)
@output.output_option
def token_revoke(token_id: int, output_fmt: str) -> None:
    data = Client(config.resolve()).delete(f"/api/v1/tokens/{token_id}")
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"token {token_id} revoked")
