"""Where a directory deploys to, and the deploys that need a yes.

`DOCKYARD_WORKSPACE` and the CLI's saved default follow the user from directory to directory:
one `dockyard deploy` in the wrong folder replaced another workspace's jobs with its own. So:

- The first deploy of a directory records its workspace in the directory's own
  `.dlt/config.toml`: `[dockyard] workspace`, as a first line `dockyard.workspace = "name"`
  (or inside a `[dockyard]` table the file has already). It is configuration, not a
  secret: it is shipped and committed like the rest of that file (dlt reads no key of a section
  no job asks for; `[dockyard] recovery_recipient` lives there already). Only `-w/--workspace`
  on the command line deploys the directory elsewhere; the record is kept as it is (the
  directory's home does not move because of one deploy; edit the file to move it).
- A deploy that archives every deployed job, or more than half of them, shows its plan and
  asks; `--yes` answers for scripts, and without a terminal and `--yes` it is refused.
- A workspace that does not exist is named as such, with the command that creates it: no
  deploy creates one.
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import tomlkit

from dockyard.cli.client import Client
from dockyard.controller import gitstore, planning, plantext, pushrules
from dockyard.controller.gitstore import FileEntry
from dockyard.errors import Conflict, DockyardError, InvalidInput, NotFound

SECTION = "dockyard"
KEY = "workspace"
CONFIG_TOML = Path(".dlt") / "config.toml"
COMMITTED = f"{gitstore.CONFIG}/config.toml"
MAX_CONFIG_BYTES = 4 * 1024 * 1024
NOTE = "# `dockyard deploy` deploys this directory here; `-w NAME` deploys elsewhere"
NOT_CONFIRMED = "not_confirmed"
"""A `DockyardError`: a deploy that archives most jobs was not confirmed (nothing pushed)."""


def require_workspace(client: Client) -> None:
    """Refuse a workspace that does not exist: a typo must not become a new workspace."""
    try:
        client.get(client.ws)
    except NotFound:
        name = client.target.workspace
        raise NotFound(
            f"workspace {name!r} does not exist on {client.server}; create it with"
            f" `dockyard workspace create {name}`"
        ) from None


def recorded(root: Path) -> str | None:
    """The workspace the directory's `.dlt/config.toml` records, if any."""
    data = _read(root / CONFIG_TOML)
    if data is None:
        return None
    section = _parse(data).get(SECTION)
    value = section.get(KEY) if isinstance(section, dict) else None
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{CONFIG_TOML}: [{SECTION}] {KEY} must be a workspace name (a string)")
    return value


def check(root: Path, client: Client) -> str | None:
    """The recorded workspace; refused when the deploy goes elsewhere without `-w` saying so."""
    home = recorded(root)
    target = client.target
    if home is None or home == target.workspace or target.workspace_flag:
        return home
    other = target.workspace
    came_from = (
        "DOCKYARD_WORKSPACE" if os.environ.get("DOCKYARD_WORKSPACE") else "the CLI's default"
    )
    raise Conflict(
        f"this directory deploys to workspace {home!r} ([{SECTION}] {KEY} in {CONFIG_TOML}),"
        f" not {other!r} (from {came_from}): give `-w {home}`, or `-w {other}` to deploy it"
        f" to {other!r} anyway"
    )


@dataclass(frozen=True, slots=True)
class Record:
    """The directory's `.dlt/config.toml` before and after recording its workspace."""

    path: Path
    before: bytes | None
    after: bytes
    workspace: str


def plan_record(
    root: Path, home: str | None, name: str, files: dict[str, FileEntry]
) -> tuple[dict[str, FileEntry], Record | None]:
    """The commit's files with the record in `config/config.toml` (so the local file and the
    committed one stay equal), and what to write locally once the push landed."""
    if home is not None:
        return files, None
    path = root / CONFIG_TOML
    before = _read(path)
    after = with_record(before, name)
    if before is not None and COMMITTED not in files:  # the user's ignore rules keep it home
        return files, Record(path, before, after, name)
    mode = files[COMMITTED].mode if COMMITTED in files else gitstore.MODE_FILE
    return {**files, COMMITTED: FileEntry(mode, after)}, Record(path, before, after, name)


def with_record(data: bytes | None, name: str) -> bytes:
    """`data` with the workspace recorded and every other byte kept: a first line
    `dockyard.workspace = "name"` (a `[dockyard]` header appended at the end would capture the
    keys a user appends to the file later), or the key added inside an existing `[dockyard]`
    table (tomlkit keeps comments and layout). The result is read back to prove that nothing
    else changed."""
    text = (data or b"").decode("utf-8")
    document = tomlkit.parse(text)
    section = document.get(SECTION)
    value = tomlkit.item(name).as_string()
    if section is None:
        out = f"{SECTION}.{KEY} = {value}  {NOTE}\n{chr(10) if text else ''}{text}"
    elif isinstance(section, dict):
        section[KEY] = name
        out = tomlkit.dumps(document)
    else:
        raise InvalidInput(f"{CONFIG_TOML}: `{SECTION}` must be a table to record the workspace")
    expected = _parse(data or b"")
    expected.setdefault(SECTION, {})[KEY] = name
    if _parse(out.encode("utf-8")) != expected:
        raise InvalidInput(
            f"cannot add [{SECTION}] {KEY} = {name!r} to {CONFIG_TOML} safely; add it by hand"
        )
    return out.encode("utf-8")


def write(record: Record | None) -> str | None:
    """Write the record into the directory after the push; a file changed meanwhile is left
    alone. Returns a line to show."""
    if record is None:
        return None
    if _read(record.path) != record.before:
        return f"{CONFIG_TOML} changed during the deploy; workspace not recorded there"
    record.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.path.with_name(record.path.name + ".dockyard-tmp")
    tmp.write_bytes(record.after)
    if record.path.exists():
        os.chmod(tmp, record.path.stat().st_mode & 0o7777)
    os.replace(tmp, record.path)
    return None


def archives_most(plan: planning.Plan) -> bool:
    """Every deployed job archived, or more than half of them."""
    archived = len(plan.refs("archived"))
    deployed = archived + len(plan.refs("updated")) + len(plan.refs("unchanged"))
    return archived > 0 and (archived == deployed or 2 * archived > deployed)


def archive_note(plan: planning.Plan, workspace: str) -> str:
    archived = len(plan.refs("archived"))
    deployed = archived + len(plan.refs("updated")) + len(plan.refs("unchanged"))
    return f"this deploy archives {archived} of the {deployed} job(s) in workspace {workspace!r}"


def confirm_archive(
    client: Client,
    plan: planning.Plan,
    schedules: Callable[[], list[dict[str, Any]]],
    yes: bool,
) -> None:
    """Ask before a deploy that archives most jobs (nothing is pushed when declined)."""
    if yes or not archives_most(plan):
        return
    note = archive_note(plan, client.target.workspace)
    if not sys.stdin.isatty():
        raise DockyardError(
            f"{note}; nothing pushed: run with --yes to confirm (no terminal to ask)",
            code=NOT_CONFIRMED,
        )
    for line in plantext.lines(plan, schedules()):
        click.echo(line, err=True)
    if not click.confirm(f"{note}. Deploy?", default=False, err=True):
        raise DockyardError(f"{note}; not confirmed, nothing pushed", code=NOT_CONFIRMED)


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{CONFIG_TOML} is over {MAX_CONFIG_BYTES} bytes; make it smaller")
    return data


def _parse(data: bytes) -> dict[str, Any]:
    """The file as TOML, or the push rules' one-line error (not UTF-8 with its line; invalid
    TOML without the offending character, which may sit inside a value)."""
    return pushrules.check_toml(str(CONFIG_TOML), data)
