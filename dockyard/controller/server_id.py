"""This server's id: made once, kept in its data directory (`server-id`).

Servers can share places that outlive them, such as a Docker engine: what one server leaves
there (its environment images) carries its id, so that it cleans up only after itself and
never removes another server's images, nor anything it did not make.
"""

import re
import secrets
from pathlib import Path

from dockyard.controller.createonce import create_once
from dockyard.errors import Unavailable

FILE = "server-id"
_FORM = re.compile(r"[0-9a-f]{32}")


def ensure(data_dir: Path) -> str:
    """The id kept in `data_dir`, made on first use (several processes starting at once
    agree on one: it is linked into place only if no other got there first)."""
    path = data_dir / FILE
    found = _read(path)
    if found is not None:
        return found
    create_once(path, (secrets.token_hex(16) + "\n").encode())
    found = _read(path)
    if found is None:
        raise Unavailable(f"{path} does not hold a server id; remove it and start again")
    return found


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not _FORM.fullmatch(text):
        raise Unavailable(
            f"{path} does not hold a server id (32 hex digits); remove it and start again"
        )
    return text
