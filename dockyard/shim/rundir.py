"""The run directory (`<data-dir>/runs/<run id>/`): the files through which a run is started,
watched and adopted after a controller restart, named and read in one place.

A local run's supervisor (`supervisor.py`) and the controller never share memory or a pipe:
the controller writes how to start the job, the supervisor writes what became of it, and a
controller that restarts reads the same files to go on watching. The Docker executor keeps
the same record for its containers, so the runner asks both the same way. Every JSON record
is written whole or not at all (a temporary file beside it, then `os.replace`): a reader sees
the old file or the new one, never a part.

The supervisor runs with the standard library only (`python -S supervisor.py <run dir>`,
this folder on its `sys.path`), so this module imports nothing else, and nothing slow to
import either (`dataclasses`, `tempfile`): the supervisor's start is part of every run's.
"""

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

# written by the controller before the run starts
SPEC = "spec.json"  # how the run was started: executor; argv, cwd, env, held, sandboxed (local)
SETTINGS = "dlt"  # the run's own `.dlt` folder: configuration at its version, secrets decrypted
REDACT = ".dockyard-redact.json"  # in SETTINGS: the secret values the run's log must hide
JOB = "job"  # local: the job's own scratch folder (HOME, TMPDIR, markers)
RELEASE = "release"  # local, held runs: the FIFO the launch arguments are written to
RELEASED = "released"  # in JOB: a held run got its launch arguments
SUPERVISOR_ERR = "supervisor.err"  # local: what the supervisor itself printed
WORK = "work"  # docker: the container's writable `/work`
SIGNALLED = "signalled"  # docker: dockyard signalled the container (its end is ours)
ENGINE_STOP = "engine-stop.json"  # docker: the container ended with the engine; logs pending

# written while the run goes on, and at its end
PROC = "proc.json"  # local: pid, process group and start ticks of the job and its supervisor
LOG = "log.jsonl"  # one JSON object per line: {"t": ISO time, "s": "out"|"err"|"sys", "m": text}
EXIT = "exit.json"  # written last: returncode, signal, error, finished_at

# in the runs folder itself
PREWARM_INDEX = ".prewarm"  # one empty file per run prepared ahead of its tick


class ExitStatus(NamedTuple):
    """How a run ended: an exit code, or the signal that ended it, and why when dockyard
    knows better than the code (lost, out of memory, could not start). A frozen value."""

    returncode: int | None
    signal: int | None
    error: str | None = None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace `path` with `data` as JSON in one step, readable by this user only; on any
    error the old file (or none) stays and no temporary file is left."""
    text = json.dumps(data)
    # beside it (one file system), hidden, one per writing thread (never two writers on one)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def launched(run_dir: Path) -> bool:
    """Whether the run was handed to its supervisor or engine (its spec is written then)."""
    return (run_dir / SPEC).exists()


def ended(run_dir: Path) -> bool:
    """Whether the run's end is recorded."""
    return (run_dir / EXIT).exists()


def read_spec(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / SPEC)


def executor_of(run_dir: Path) -> str | None:
    """The executor the run was started with (None: not started, or its spec is unreadable);
    a spec without one is the local executor's (written before there were others)."""
    spec = read_spec(run_dir)
    return None if spec is None else str(spec.get("executor") or "local")


def read_proc(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / PROC)


def write_exit(run_dir: Path, status: ExitStatus, finished_at: str | None) -> None:
    record = {
        "returncode": status.returncode,
        "signal": status.signal,
        "error": status.error,
        "finished_at": finished_at,
    }
    write_json(run_dir / EXIT, record)


def read_exit(run_dir: Path) -> ExitStatus | None:
    """How the run ended; None while it has not. A record that exists but cannot be read
    still ends the run, with the problem as its reason (it is never written in part)."""
    path = run_dir / EXIT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return _unreadable(path, exc)
    status = _exit_status(data)
    return status if status is not None else _unreadable(path, ValueError("unexpected fields"))


def _exit_status(data: object) -> ExitStatus | None:
    if not isinstance(data, dict):
        return None
    code, signum, error = data.get("returncode"), data.get("signal"), data.get("error")
    if not (_number(code) and _number(signum) and (error is None or isinstance(error, str))):
        return None
    return ExitStatus(code, signum, error)


def _number(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _unreadable(path: Path, exc: Exception) -> ExitStatus:
    return ExitStatus(
        None, None, f"the run's exit record {path} is unreadable ({exc}); how it ended is unknown"
    )


def read_redactions(run_dir: Path) -> list[str]:
    """The secret values the run's log must hide (none once its configuration is removed)."""
    try:
        values = json.loads((run_dir / SETTINGS / REDACT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(v) for v in values] if isinstance(values, list) else []
