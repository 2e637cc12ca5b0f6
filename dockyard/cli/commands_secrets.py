"""`dockyard secrets seal [FILE…]`: seal a workspace's `*.secrets.toml` values in place, for
repositories that are deployed by the server (a linked GitHub repository) and so may hold
only sealed values.

`dockyard deploy` seals on the way to the server and leaves the user's files alone; a linked
repository is deployed without anyone's laptop in between, so its files must be committed
sealed. Each value becomes an `ENC[age,…]` token for the workspace's current key (the same
format a deploy commits); a value that already is a token for that key is kept byte for
byte, so sealing twice changes nothing and a changed value changes one line.
"""

import os
from pathlib import Path

import click

from dockyard import crypto
from dockyard.cli import config, output, sealing
from dockyard.cli.client import Client
from dockyard.errors import InvalidInput


def register(cli: click.Group) -> None:
    cli.add_command(secrets)


@click.group()
def secrets() -> None:
    """Secrets in a workspace's files."""


@secrets.command("seal")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@output.workspace_option
def seal(files: tuple[Path, ...], workspace: str | None) -> None:
    """Seal the values of FILES (default: every `.dlt/*secrets.toml` here) in place for the
    workspace's key; commit the result to the linked repository."""
    targets = list(files) or sorted(Path(".dlt").glob("*secrets.toml"))
    if not targets:
        raise InvalidInput(
            "no .dlt/*secrets.toml here; run it in the workspace folder or name the files"
        )
    key = sealing.workspace_key(Client(config.resolve(workspace=workspace)))
    recovery = crypto.recovery_recipient(_read(Path(".dlt/config.toml")))
    for path in targets:
        before = _text(path)
        after = crypto.encrypt_toml(
            before,
            str(path),
            previous=before,
            public_key=key.public_key,
            recovery=recovery,
            fp_key=key.fp_key,
            known_kids=key.retired,
        )
        if after == before:
            click.echo(f"{path}: already sealed")
            continue
        _replace(path, after)
        click.echo(f"{path}: sealed for key {key.kid}")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text; save it as UTF-8") from None


def _replace(path: Path, text: str) -> None:
    """Write beside, then rename: a crash leaves the old file or the sealed one, never half."""
    tmp = path.with_name(f".{path.name}.sealing")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
