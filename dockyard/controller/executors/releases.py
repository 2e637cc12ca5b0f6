"""A held run's release FIFO, the same for both executors: the controller makes it and keeps
its end open read-write (so neither the job's open() nor a write ever blocks, and the job
reads end-of-file once the controller is gone), writes the launch arguments into it, and
tells a held run never released by the marker the job makes in its own folder."""

import json
import os
from pathlib import Path
from typing import Any

from dockyard.shim import rundir


def open_fifo(run_dir: Path, uid: int | None) -> int:
    """Make the run's release FIFO, readable by the job's user, and open the controller's
    end of it."""
    fifo = run_dir / rundir.RELEASE
    os.mkfifo(fifo, 0o600)
    if uid is not None and uid != os.geteuid():
        os.chown(fifo, uid, uid)
    return os.open(fifo, os.O_RDWR | os.O_NONBLOCK)


def write(fd: int, payload: dict[str, Any]) -> bool:
    """Hand the held run its payload; False when the FIFO is gone. The fd stays open until
    the run has ended: a pipe keeps its data only while someone has it open, and the job
    may not have opened it yet."""
    try:
        os.write(fd, (json.dumps(payload) + "\n").encode())
    except OSError:
        return False
    return True


def unreleased(run_dir: Path, job_folder: str) -> bool:
    """A held run (its spec says so) whose job never made its `released` marker in its own
    folder (`rundir.JOB` locally, `rundir.WORK` in a container)."""
    spec = rundir.read_spec(run_dir)
    released = run_dir / job_folder / rundir.RELEASED
    return spec is not None and bool(spec.get("held")) and not released.exists()
