"""Run logs: one append-only JSON-lines file per run (`runs/<id>/log.jsonl`).

Each line is `{"t": time, "s": stream, "m": text}` with stream `out`/`err` (the job) or `sys`
(dockyard: environment build, start, stop, exit). The database only knows where it is.
"""

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.clock import isoformat, utcnow

LOG_NAME = "log.jsonl"
REDACT_FILE = ".dockyard-redact.json"  # in the run's `dlt` folder: what its log must hide
_write_lock = threading.Lock()


def path(run_dir: Path) -> Path:
    return run_dir / LOG_NAME


def system(run_dir: Path, text: str) -> None:
    """Append a dockyard line (not the job's own output)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"t": isoformat(utcnow()), "s": "sys", "m": text}, ensure_ascii=False)
    with _write_lock, path(run_dir).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def append(run_dir: Path, stream: str, text: str, at: str | None) -> None:
    """Append one line of a run's own output (`out`/`err`), stamped `at` (ISO) or now."""
    line = json.dumps({"t": at or isoformat(utcnow()), "s": stream, "m": text}, ensure_ascii=False)
    with _write_lock, path(run_dir).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def last_time(run_dir: Path, stream: str) -> str | None:
    """The timestamp of the stream's last line (where a re-attached log reader resumes)."""
    file = path(run_dir)
    if not file.exists():
        return None
    last = None
    with file.open("rb") as f:
        for raw in f:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("s") == stream:
                last = entry.get("t")
    return last


@dataclass(frozen=True, slots=True)
class Chunk:
    lines: list[dict[str, Any]]
    next_offset: int


def read(run_dir: Path, offset: int = 0, limit: int = 5000) -> Chunk:
    """Complete lines from byte `offset` on; `next_offset` is where to continue."""
    file = path(run_dir)
    if not file.exists():
        return Chunk([], offset)
    lines: list[dict[str, Any]] = []
    with file.open("rb") as f:
        f.seek(offset)
        position = offset
        for raw in f:
            if not raw.endswith(b"\n") or len(lines) >= limit:
                break  # a line still being written, or enough for one answer
            position += len(raw)
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"t": None, "s": "sys", "m": raw.decode("utf-8", "replace")})
    return Chunk(lines, position)


def redactions(run_dir: Path) -> list[str]:
    """The secret strings a run's log must not show (gone with its configuration when the
    run has ended)."""
    try:
        values = json.loads((run_dir / "dlt" / REDACT_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [str(v) for v in values]
