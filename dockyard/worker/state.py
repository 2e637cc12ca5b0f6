"""What a worker keeps per run on its own disk (no secret: those live in the run's settings
folder only while it runs), so a restarted worker adopts its runs; and the pure log-shipping
bookkeeping: which bytes of a run's `log.jsonl` go next.

A run's state file is `<data>/state/<run id>.json`: run id, claim epoch, how many bytes of its
log the server has, and what started it (workspace, SHA, executor). Written atomically."""

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

CHUNK = 256 * 1024  # the most log bytes one shipment carries (under the API's body cap)


@dataclass(frozen=True, slots=True)
class RunState:
    run_id: str
    epoch: int
    workspace: str
    sha: str
    shipped: int = 0  # bytes of the run's log.jsonl the server has
    launched: bool = False  # the process was handed to the executor

    def with_shipped(self, offset: int) -> "RunState":
        return replace(self, shipped=offset)


def next_chunk(log: Path, shipped: int, limit: int = CHUNK) -> bytes:
    """The complete lines of `log` after byte `shipped`, at most `limit` bytes of them (a
    line longer than `limit` goes whole: the executor bounds line length)."""
    try:
        with log.open("rb") as f:
            f.seek(shipped)
            data = f.read(limit)
            if data and not data.endswith(b"\n") and b"\n" not in data:
                data += f.readline()  # one long line: up to its end, if it has one yet
    except FileNotFoundError:
        return b""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def save(self, state: RunState) -> None:
        tmp = self.root / f".{state.run_id}.tmp"
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, self._path(state.run_id))

    def forget(self, run_id: str) -> None:
        self._path(run_id).unlink(missing_ok=True)

    def load_all(self) -> list[RunState]:
        found = []
        for path in sorted(self.root.glob("*.json")):
            try:
                data: dict[str, Any] = json.loads(path.read_text())
                found.append(RunState(**data))
            except (ValueError, TypeError):
                path.unlink(missing_ok=True)  # unreadable: nothing can be adopted from it
        return found
