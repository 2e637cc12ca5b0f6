"""Removing a folder that something may be about to use, in two steps: rename it out of the
way (atomic, done under the lock of whoever makes it) and delete it later (slow, no lock)."""

import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

ASIDE = ".removing-"


def set_aside(target: Path) -> Path:
    """Rename `target` to a hidden sibling that nothing will look for; return the new path."""
    aside = target.with_name(f".{target.name}{ASIDE}{secrets.token_hex(4)}")
    os.replace(target, aside)
    return aside


def leftovers(folder: Path) -> list[Path]:
    """What an earlier pass set aside but did not delete (the server stopped meanwhile)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith(".") and ASIDE in p.name]


def remove(path: Path) -> None:
    """Delete a folder, read-only parts included (checkouts may be made read-only)."""

    def writable_again(func: Callable[..., Any], name: str, _exc: Any) -> None:
        parent = os.path.dirname(name)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        func(name)

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, onerror=writable_again)
