"""`deploy`, `sync`, `deployment …`, `configuration …`, `workspace …`, `info` (also
`workspace info`); the GitHub link commands are `commands_github`."""

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dockyard.cli import commands_github, commands_secrets, config, output
from dockyard.cli.client import Client

if TYPE_CHECKING:
    from dockyard.cli.deploy import DeployResult


def register(cli: click.Group) -> None:
    for command in (deploy_cmd, deployment, configuration, workspace, info):
        cli.add_command(command)
    workspace.add_command(info, name="info")  # `workspace info` = `info`
    cli.add_command(deploy_cmd, name="sync")  # `sync` = code and configuration = deploy
    commands_github.register(workspace)
    commands_secrets.register(cli)


def client_for(workspace_name: str | None) -> Client:
    return Client(config.resolve(workspace=workspace_name))


def show_deploy(result: "DeployResult", client: Client, fmt: str, show_manifest: bool) -> None:
    if show_manifest:
        from dockyard.controller import manifests

        click.echo(manifests.dump_yaml(result.manifest), nl=False)
        if fmt != "json":
            return
    if fmt == "json":
        output.emit_json(result.as_dict())
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    verb = "would" if result.dry_run else "did"
    from dockyard.controller import plantext

    for line in plantext.lines(result.plan, result.schedules):
        click.echo(line)
    if result.committed is None and not result.changed_parts:
        click.echo("nothing changed: no new version")
    elif result.dry_run:
        click.echo(
            f"dry run: {verb} change {' and '.join(result.changed_parts)}; {result.plan.summary()}"
        )
    else:
        click.echo(
            f"deployed {output.short(result.committed)} to {client.target.workspace}:"
            f" {result.plan.summary()}"
        )
    click.echo(
        f"deployment version {output.short(result.deployment_version)},"
        f" configuration version {output.short(result.configuration_version)}"
    )
    if result.recorded_workspace:
        click.echo(
            f"this directory now deploys to workspace {result.recorded_workspace!r}"
            " (recorded in .dlt/config.toml, [dockyard] workspace)"
        )


def _deploy_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--dry-run", is_flag=True, help="Show the plan; commit nothing."),
            click.option("--show-manifest", is_flag=True, help="Print the manifest YAML."),
            click.option(
                "--yes",
                is_flag=True,
                help="Deploy without asking even if it archives every job or more than half.",
            ),
            click.option(
                "--skip-import-check",
                is_flag=True,
                help="Don't import each job's module in its own environment first (emergencies).",
            ),
            click.option(
                "--python",
                "python",
                default=None,
                help="Interpreter of the workspace's environment.",
            ),
            output.workspace_option,
            output.output_option,
        ]
    ):
        func = option(func)
    return func


@click.command("deploy")
@_deploy_options
@click.option(
    "--force",
    is_flag=True,
    help="Deploy even though the workspace is linked to GitHub (the next push replaces it).",
)
def deploy_cmd(
    dry_run: bool,
    show_manifest: bool,
    yes: bool,
    skip_import_check: bool,
    python: str | None,
    workspace: str | None,
    output_fmt: str,
    force: bool,
) -> None:
    """Generate the manifest, check that each job's module imports in the environment it runs
    in, plan, commit, push and wait until the server applied it.

    The first deploy records the workspace in .dlt/config.toml; deploying the directory to
    another one then needs -w on the command line. The workspace must exist (`dockyard
    workspace create NAME`)."""
    _deploy(
        workspace,
        python,
        dry_run,
        output_fmt,
        show_manifest,
        force=force,
        yes=yes,
        skip_import_check=skip_import_check,
    )


def _deploy(
    workspace: str | None,
    python: str | None,
    dry_run: bool,
    output_fmt: str,
    show_manifest: bool,
    keep_configuration: bool = False,
    force: bool = False,
    yes: bool = False,
    skip_import_check: bool = False,
) -> None:
    from dockyard.cli.deploy import DeployOptions, deploy

    client = client_for(workspace)
    root = Path.cwd().resolve()
    options = DeployOptions(
        root,
        None,
        python,
        dry_run,
        keep_configuration,
        force,
        yes,
        skip_import_check=skip_import_check,
    )
    show_deploy(deploy(client, options), client, output_fmt, show_manifest)


def _versions(kind: str, workspace_name: str | None, fmt: str) -> None:
    client = client_for(workspace_name)
    data = client.get(f"{client.ws}/{kind}s")
    if fmt == "json":
        output.emit_json(data)
        return
    rows = [
        [v["version"][:12], output.when(v["created_at"]), v["message"].splitlines()[0]]
        for v in data
    ]
    headers = ["version", "created", "message"]
    if any(v.get("source_commit") for v in data):  # deployed from a git host
        headers.insert(1, "source commit")
        for row, v in zip(rows, data, strict=True):
            row.insert(1, _short_source(v.get("source_commit")))
    output.table(rows, headers)


def _short_source(source: str | None) -> str:
    """`OWNER/NAME@SHA` with the SHA shortened, or `-` for a deploy from a laptop."""
    if not source:
        return "-"
    name, _, sha = source.rpartition("@")
    return f"{name}@{sha[:12]}"


def _version_info(
    kind: str, sha: str | None, workspace: str | None, fmt: str
) -> dict[str, Any] | None:
    """One version from the API; printed as JSON (and None returned) with `-o json`."""
    client = client_for(workspace)
    data: dict[str, Any] = client.get(f"{client.ws}/{kind}s/{sha or 'latest'}")
    if fmt == "json":
        output.emit_json(data)
        return None
    return data


def _version_header(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return [("version", data["version"]), ("created", output.when(data["created_at"]))]


@click.group()
def deployment() -> None:
    """Deployment versions (commits that changed code, manifest or requirements)."""


@deployment.command("list")
@output.workspace_option
@output.output_option
def deployment_list(workspace: str | None, output_fmt: str) -> None:
    _versions("deployment", workspace, output_fmt)


@deployment.command("info")
@click.argument("sha", required=False)
@output.workspace_option
@output.output_option
def deployment_info(sha: str | None, workspace: str | None, output_fmt: str) -> None:
    data = _version_info("deployment", sha, workspace, output_fmt)
    if data is None:
        return
    output.kv(
        [
            *_version_header(data),
            ("message", data["message"].splitlines()[0]),
            *([("source commit", data["source_commit"])] if data.get("source_commit") else []),
            ("previous", data["previous_version"]),
            ("jobs", len(data["jobs"])),
            ("changed files", len(data["changed_files"])),
        ]
    )
    changes = data.get("field_changes") or {}
    for kind in ("added", "updated", "archived"):
        for ref in data["plan"][kind]:
            click.echo(f"  {kind:<9} {ref}")
            for change in changes.get(ref, []):
                line = f"    {change['field']}: {change['old']} -> {change['new']}"
                click.echo(output.visible(line))
    for path in data["changed_files"]:
        click.echo(output.visible(f"  file      {path}"))


@deployment.command("rollback")
@click.argument("sha")
@click.option(
    "--force",
    is_flag=True,
    help="Roll back a workspace linked to GitHub anyway (the next push there replaces it).",
)
@output.workspace_option
@output.output_option
def deployment_rollback(sha: str, force: bool, workspace: str | None, output_fmt: str) -> None:
    """Deploy SHA's files again as a new commit (history is kept) and apply it."""
    client = client_for(workspace)
    path = f"{client.ws}/deployments/{urllib.parse.quote(sha, safe='')}/rollback"
    data = client.post(path, {"force": force})
    if output_fmt == "json":
        output.emit_json(data)
        return
    name = data["workspace"]
    if data["status"] == "unchanged":
        click.echo(f"nothing to do: workspace {name} holds {output.short(data['target'])} already")
        return
    for kind in ("added", "updated", "archived"):
        for ref in data["plan"][kind]:
            click.echo(f"  {kind:<9} {ref}")
    for path in data["resealed"]:
        click.echo(f"  resealed  {path} (for the current key)")
    click.echo(
        f"rolled back {name} to {output.short(data['target'])} as"
        f" {output.short(data['commit'])} (undoes {len(data['undone'])} commit(s)):"
        f" {data['summary']}"
    )
    if data["note"]:
        click.echo(f"note: {data['note']}", err=True)


@deployment.command("sync")
@_deploy_options
def deployment_sync(
    dry_run: bool,
    show_manifest: bool,
    yes: bool,
    skip_import_check: bool,
    python: str | None,
    workspace: str | None,
    output_fmt: str,
) -> None:
    """Deploy code and manifest; keep the deployed configuration."""
    _deploy(
        workspace,
        python,
        dry_run,
        output_fmt,
        show_manifest,
        True,
        yes=yes,
        skip_import_check=skip_import_check,
    )


@click.group()
def configuration() -> None:
    """Configuration versions (commits that changed config/)."""


@configuration.command("list")
@output.workspace_option
@output.output_option
def configuration_list(workspace: str | None, output_fmt: str) -> None:
    _versions("configuration", workspace, output_fmt)


@configuration.command("info")
@click.argument("sha", required=False)
@click.option("--against", default=None, help="Compare with this version (default: previous).")
@output.workspace_option
@output.output_option
def configuration_info(
    sha: str | None, against: str | None, workspace: str | None, output_fmt: str
) -> None:
    """Files, profiles and key names of a configuration version (never values), and the key
    names changed since the previous version (or --against SHA)."""
    client = client_for(workspace)
    data = client.get(f"{client.ws}/configurations/{sha or 'latest'}", against=against)
    if output_fmt == "json":
        output.emit_json(data)
        return
    output.kv(
        [
            *_version_header(data),
            ("profiles", data["profiles"]),
            ("compared with", data["compared_with"]),
        ]
    )
    for file in data["files"]:
        kind = " (encrypted)" if file["secret"] else ""
        click.echo(f"  {file['name']}{kind}: {', '.join(file['keys']) or '(no keys)'}")
    for kind in ("added", "removed", "changed"):
        for name in data["changes"][kind]:
            click.echo(f"{kind}: {name}")


@configuration.command("sync")
@click.option("--dry-run", is_flag=True)
@output.workspace_option
@output.output_option
def configuration_sync(dry_run: bool, workspace: str | None, output_fmt: str) -> None:
    """Commit the local .dlt configuration on top of the deployed code."""
    from dockyard.cli.deploy import sync_configuration

    client = client_for(workspace)
    result = sync_configuration(client, Path.cwd().resolve(), dry_run)
    show_deploy(result, client, output_fmt, False)


@click.group()
def workspace() -> None:
    """Workspaces on the server: create, list, switch the CLI's default."""


@workspace.command("create")
@click.argument("name")
@output.output_option
def workspace_create(name: str, output_fmt: str) -> None:
    """Create workspace NAME (admin): its git repository and key. No deploy creates one."""
    data = client_for(name).post("/api/v1/workspaces", {"name": name})
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"workspace {name!r} created")


@workspace.command("list")
@output.output_option
def workspace_list(output_fmt: str) -> None:
    data = client_for(None).get("/api/v1/workspaces")
    if output_fmt == "json":
        output.emit_json(data)
        return
    current = config.resolve().workspace
    output.table(
        [
            [
                "*" if w["name"] == current else "",
                w["name"],
                output.short(w["deployment_version"]),
                output.short(w["configuration_version"]),
                w.get("description"),
            ]
            for w in data
        ],
        ["", "name", "deployment", "configuration", "description"],
    )


@workspace.command("switch")
@click.argument("name")
def workspace_switch(name: str) -> None:
    """Make NAME the CLI's default workspace."""
    client_for(name).get(f"/api/v1/workspaces/{name}")
    saved = config.load_saved()
    saved["workspace"] = name
    config.save(saved)
    click.echo(f"default workspace is now {name!r}")


@workspace.command("set-executor")
@click.argument("executor", type=click.Choice(["local", "docker", "default"]))
@output.workspace_option
@output.output_option
def workspace_set_executor(executor: str, workspace: str | None, output_fmt: str) -> None:
    """Run this workspace's jobs with the local or the Docker executor (admin)."""
    client = client_for(workspace)
    data = client.request(
        "PATCH", client.ws, body={"executor": None if executor == "default" else executor}
    )
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(
        f"workspace {data['name']!r} runs its jobs with the {data['effective_executor']} executor"
    )


@workspace.command("allow-github-oidc")
@click.argument("name")
@click.option("--repo", "repository", required=True, help="OWNER/NAME on GitHub.")
@click.option(
    "--ref",
    "refs",
    multiple=True,
    required=True,
    help="A full ref, e.g. refs/heads/main; `*` matches within one segment (repeatable).",
)
@click.option(
    "--role",
    type=click.Choice(["deploy", "read"]),
    default="deploy",
    show_default=True,
    help="Of the tokens the jobs get (read: e.g. pull requests' dry runs of secret-free"
    " workspaces).",
)
@click.option("--remove", is_flag=True, help="Remove these rules instead.")
@output.output_option
def workspace_allow_github_oidc(
    name: str,
    repository: str,
    refs: tuple[str, ...],
    role: str,
    remove: bool,
    output_fmt: str,
) -> None:
    """Let GitHub Actions jobs of REPO on REF get short-lived tokens for workspace NAME,
    with no stored secret (admin; docs/github.md)."""
    client = client_for(name)
    path = f"/api/v1/workspaces/{name}/github-oidc" + ("/remove" if remove else "")
    done = [client.post(path, {"repository": repository, "ref": ref, "role": role}) for ref in refs]
    if output_fmt == "json":
        output.emit_json(done)
        return
    for rule in done:
        if remove:
            click.echo(f"removed: {rule['repository']} {rule['ref']} on {name!r}")
        else:
            click.echo(
                f"allowed: GitHub Actions jobs of {rule['repository']} on {rule['ref']}"
                f" get {rule['role']} tokens for {name!r}"
            )


@workspace.command("key")
@output.workspace_option
@output.output_option
def workspace_key(workspace: str | None, output_fmt: str) -> None:
    """The workspace's public key: `dockyard deploy` encrypts secrets for it."""
    client = client_for(workspace)
    data = client.get(f"{client.ws}/key")
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(data["public_key"])


@workspace.command("rotate-key")
@output.workspace_option
@output.output_option
def workspace_rotate_key(workspace: str | None, output_fmt: str) -> None:
    """A new key pair; every deployed secret re-encrypted for it in one commit (admin)."""
    client = client_for(workspace)
    data = client.post(f"{client.ws}/rotate-key", {})
    if output_fmt == "json":
        output.emit_json(data)
        return
    click.echo(f"workspace {data['workspace']!r} key {data['retired_key_id']} -> {data['key_id']}")
    if data["commit"]:
        click.echo(f"secrets re-encrypted in {data['commit'][:12]}")


@click.command()
@output.workspace_option
@output.output_option
def info(workspace: str | None, output_fmt: str) -> None:
    """The workspace: versions, jobs, active runs, its GitHub link."""
    client = client_for(workspace)
    data = client.get(client.ws)
    data["server"] = client.server
    if output_fmt == "json":
        output.emit_json(data)
        return
    output.kv(
        [
            ("server", client.server),
            ("workspace", data["name"]),
            ("description", data.get("description")),
            ("deployment version", data["deployment_version"]),
            ("configuration version", data["configuration_version"]),
            ("executor", data["effective_executor"]),
            ("jobs", data["jobs"]),
            ("active runs", data["active_runs"]),
            ("reconcile error", data["reconcile_error"]),
            ("dlthub id", data.get("dlthub_id")),
            *commands_github.info_pairs(data.get("github")),
        ]
    )
    for rule in data.get("github_oidc", []):
        click.echo(f"github oidc: {rule['repository']} {rule['ref']} -> {rule['role']}")
