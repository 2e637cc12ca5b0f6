"""A lock across processes on one data directory (`fcntl.flock` on a file beside the thing it
guards). Several controllers may share one data directory; a thread lock orders one
process's threads only. flock works on local file systems and, on Linux, on NFS (emulated with
POSIX byte-range locks); the lock is released when the holder exits, however it dies. A lock
file is removed with what it guards (retention), by its holder; a waiter then re-checks that
it locked the file still at that path.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the exclusive lock on `path` (created if missing), waiting for it. A holder may
    remove the file (`remove`) when what it guards is gone: a waiter that then gets the lock
    on the removed file sees it is no longer the one at `path` and locks the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same(fd, path):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def remove(path: Path) -> None:
    """Remove a lock file; only while holding it."""
    path.unlink(missing_ok=True)


def _same(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def unique_tmp(target: Path) -> Path:
    """A sibling name no other process uses for `target` (pid and randomness)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
