"""`dockyard`: the command set of `dlt runtime …`, against a dockyard server.

Every command parses its arguments, calls the server (or the local workspace for deploy)
and renders; `-o json` prints machine-readable output. Errors are one line on stderr with a
non-zero exit code.
"""

import sys

import click

from dockyard.cli import (
    commands_alerts,
    commands_apps,
    commands_audit,
    commands_leases,
    commands_runs,
    commands_server,
    commands_workers,
    commands_workspace,
)
from dockyard.errors import DockyardError, one_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dockyard")
def cli() -> None:
    """dockyard: deploy, schedule, run and watch dlt workspaces on your own machines."""


commands_server.register(cli)
commands_workspace.register(cli)
commands_runs.register(cli)
commands_apps.register(cli)
commands_alerts.register(cli)
commands_audit.register(cli)
commands_leases.register(cli)
commands_workers.register(cli)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except DockyardError as exc:
        click.echo(f"error: {one_line(exc.message)}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
