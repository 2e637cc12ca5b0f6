"""Supervises one run: starts the job in its own process group, timestamps every output
line into the run's log, and records how it ended.

It is detached from the controller (own session) and talks to it only through files in the
run directory, so a run outlives a controller restart and is adopted afterwards:

- `spec.json`  (written by the controller) argv, cwd, env
- `proc.json`  (written here, atomically) child pid, its process group and start ticks
- `log.jsonl`  one JSON object per line: {"t": ISO time, "s": "out"|"err"|"sys", "m": text}
- `exit.json`  (written here, atomically, last) returncode, signal, finished_at

Output is cut into lines by `loglines.py`, the splitter the Docker executor uses too: lines
are bounded (`[line truncated: N bytes]`), and the secret values of the run's profile
(`dlt/.dockyard-redact.json`, written by the controller with the run's configuration) are
replaced by `***` on the whole line before it is written, whatever the pipe cut it into.
"""

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:  # imported by the controller or the tests
    from dockyard.shim import loglines
else:  # run as a script (`python -S supervisor.py`): its own folder is on sys.path
    import loglines


def now() -> str:
    return datetime.now(UTC).isoformat()


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def secrets_pattern(run_dir: Path) -> "loglines.Redactor | None":
    """What the run's log must hide (None: nothing)."""
    try:
        values = json.loads((run_dir / "dlt" / ".dockyard-redact.json").read_text())
    except (OSError, ValueError):
        return None
    redactor = loglines.Redactor(str(v) for v in values)
    return redactor if redactor else None


class Log:
    def __init__(self, path: Path, secrets: "loglines.Redactor | None" = None) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._secrets = secrets

    def write(self, stream: str, text: str) -> None:
        """Append one line as it is (the job's lines come redacted from `pump`)."""
        line = json.dumps({"t": now(), "s": stream, "m": text}, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def pump(self, pipe: IO[bytes], stream: str) -> None:
        """Copy one of the job's pipes into the log until it closes, line by line."""
        splitter = loglines.LineSplitter(lambda text: self.write(stream, text), self._secrets)
        fd = pipe.fileno()
        while chunk := os.read(fd, loglines.READ_SIZE):
            splitter.feed(chunk)
        splitter.close()


def main() -> int:
    run_dir = Path(sys.argv[1])
    spec = json.loads((run_dir / "spec.json").read_text())
    log = Log(run_dir / "log.jsonl", secrets_pattern(run_dir))
    try:
        child = subprocess.Popen(
            spec["argv"],
            cwd=spec["cwd"],
            env=spec["env"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
    except OSError as exc:
        log.write("sys", f"could not start the job: {exc}")
        write_atomic(
            run_dir / "exit.json",
            {"returncode": 127, "signal": None, "finished_at": now(), "error": str(exc)},
        )
        return 1
    write_atomic(
        run_dir / "proc.json",
        {
            "pid": child.pid,
            "pgid": child.pid,
            "ticks": start_ticks(child.pid),
            "supervisor_pid": os.getpid(),
            "supervisor_ticks": start_ticks(os.getpid()),
            "started_at": now(),
        },
    )
    pumps = [
        threading.Thread(target=log.pump, args=(pipe, name), daemon=True)
        for pipe, name in ((child.stdout, "out"), (child.stderr, "err"))
    ]
    for pump in pumps:
        pump.start()
    code = child.wait()
    for pump in pumps:
        pump.join(timeout=5)
    write_atomic(
        run_dir / "exit.json",
        {
            "returncode": code if code >= 0 else None,
            "signal": -code if code < 0 else None,
            "finished_at": now(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
