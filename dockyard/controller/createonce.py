"""A file made once by whichever of several processes gets there first.

Servers starting together on one data dir (several controllers on shared storage) each make
the server id, the master key and the beacon key if missing; they must end up agreeing on one.
Each writes its own candidate aside in full (owner-only), then links it into place: the link
fails if another got there first, and everyone then reads the one that won. A reader never
sees a half-written file."""

import os
import secrets
from pathlib import Path


def create_once(path: Path, content: bytes) -> None:
    """Put `content` at `path` (mode 0600) unless a file is already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    finally:
        aside.unlink()
