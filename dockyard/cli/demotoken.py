"""Which admin token `make demo` (examples/demo.sh) starts its server with.

The demo used to generate a token into `.dockyard-demo/admin-token` and export it as
DOCKYARD_ADMIN_TOKEN over whatever the user had set, so the token they meant to log in with
did not work, without a word. Now a token the user set is used, or the demo stops with one
line naming the choice; never silently replaced:

- DOCKYARD_ADMIN_TOKEN in the environment: used (and kept in the demo's token file, so a later
  run without it does not start the server with another token, which would revoke theirs);
  if the demo's state was made with another token, stop: use the demo's or put theirs there.
- else the demo's token file, as before.
- else the CLI's token for the demo's server (`dockyard login` to it, or DOCKYARD_SERVER and
  DOCKYARD_TOKEN naming it): used, so that login keeps working against the new demo.
- else a new token.

`python -m dockyard.cli.demotoken DATA_DIR SERVER_URL` prints the token on stdout and which one
it is on stderr; on a conflict it prints `error: …` and exits 1.
"""

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from dockyard.cli import config

TOKEN_FILE = "admin-token"  # noqa: S105 (a file name, not a secret)
MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Choice:
    token: str
    source: str  # said to the user: where the token comes from
    write: bool  # keep it in the demo's token file


class Stop(Exception):
    """The user's token and the demo's disagree: they choose (the message says how)."""


def decide(
    env_token: str | None, file_token: str | None, cli_token: str | None, where: str
) -> Choice:
    """Pure: the token to use given the environment's, the demo file's and the CLI's token
    for the demo server (`where` names the file in messages)."""
    if env_token:
        if file_token and file_token != env_token:
            raise Stop(
                f"DOCKYARD_ADMIN_TOKEN is set, but the demo's state was made with the token in"
                f" {where}: unset DOCKYARD_ADMIN_TOKEN to use the demo's, or write yours into"
                f" {where} to use yours (the demo's is then revoked)"
            )
        return Choice(env_token, "DOCKYARD_ADMIN_TOKEN from your environment", not file_token)
    if file_token:
        return Choice(file_token, f"the demo's, in {where}", False)
    if cli_token:
        return Choice(cli_token, "your CLI login for this server", True)
    return Choice("dy_" + secrets.token_urlsafe(32), f"new, saved in {where}", True)


def cli_token_for(server: str) -> str | None:
    """The CLI's token when the CLI (environment or saved login) points at `server`."""
    target = config.resolve()
    return target.token if target.server == server.rstrip("/") else None


def read_token(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TOKEN_BYTES)
    except FileNotFoundError:
        return None
    return data.decode("utf-8", "replace").strip() or None


def save_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    data_dir, server = Path(argv[0]), argv[1]
    path = data_dir / TOKEN_FILE
    try:
        choice = decide(
            os.environ.get("DOCKYARD_ADMIN_TOKEN"),
            read_token(path),
            cli_token_for(server),
            str(path),
        )
    except Stop as stop:
        print(f"error: {stop}", file=sys.stderr)
        return 1
    if choice.write:
        save_token(path, choice.token)
    print(f"==> admin token: {choice.source}", file=sys.stderr)
    print(choice.token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
