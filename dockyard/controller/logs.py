"""Run logs: one append-only JSON-lines file per run (`runs/<id>/log.jsonl`).

Each line is `{"t": time, "s": stream, "m": text}` with stream `out`/`err` (the job) or `sys`
(dockyard: environment build, start, stop, exit). The database only knows where it is.

Every read is bounded, whatever the log holds (a job decides how much it prints): a read
returns the complete lines from a byte offset, at most `READ_LINES` of them and at most
`READ_BYTES` bytes, and says whether more is waiting; the tail is found by scanning back from
the end; line counts are kept per file and only ever extended over the bytes appended since.
Memory per read is a few `READ_BYTES` at most, so many readers of a big log cost little.
"""

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dockyard.clock import isoformat, utcnow
from dockyard.errors import InvalidInput
from dockyard.shim import loglines, rundir

LOG_NAME = rundir.LOG
REDACT_FILE = rundir.REDACT  # in the run's `dlt` folder: what its log must hide
READ_LINES = 5000  # the most lines one read returns
READ_BYTES = 1 << 20  # the most bytes of log one read returns
BLOCK = 64 * 1024  # how much a scan (tail, count, skip) reads at once
MAX_OFFSET = 1 << 53  # offsets and line counts a client may ask for (a file seek's range)
_write_lock = threading.Lock()


def path(run_dir: Path) -> Path:
    return run_dir / LOG_NAME


def system(run_dir: Path, text: str) -> None:
    """Append a dockyard line (not the job's own output), bounded like the job's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = loglines.render(text.encode(), 0, None, loglines.MAX_LINE)
    line = json.dumps({"t": isoformat(utcnow()), "s": "sys", "m": text}, ensure_ascii=False)
    with _write_lock, path(run_dir).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def append(run_dir: Path, stream: str, text: str, at: str | None) -> None:
    """Append one line of a run's own output (`out`/`err`, already cut and redacted by
    `dockyard.shim.loglines`), stamped `at` (ISO) or now."""
    line = json.dumps({"t": at or isoformat(utcnow()), "s": stream, "m": text}, ensure_ascii=False)
    with _write_lock, path(run_dir).open("a", encoding="utf-8") as f:
        f.write(line + "\n")


STREAMS = ("out", "err", "sys")
SHIPPED_LINE_MAX = 8 * loglines.MAX_LINE  # a kept line, JSON-escaped, with its time and stream


def check_lines(data: bytes) -> None:
    """Lines a worker ships must be what its executor writes: one JSON object per line with a
    time, a stream and a text, no longer than a kept line can be; else InvalidInput naming
    the line (nothing of the shipment is appended)."""
    for number, raw in enumerate(data.splitlines(), 1):
        if len(raw) > SHIPPED_LINE_MAX:
            raise InvalidInput(f"log line {number} of the shipment is longer than a log keeps")
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("t"), str)
            and entry.get("s") in STREAMS
            and isinstance(entry.get("m"), str)
        ):
            raise InvalidInput(
                f'log line {number} of the shipment is not {{"t": time, "s": out|err|sys,'
                ' "m": text}: ship the run\'s log.jsonl as the executor wrote it'
            )


def append_lines(run_dir: Path, data: bytes) -> None:
    """Append complete lines as they are (a worker's shipped log), never interleaved with a
    line written here at the same time."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with _write_lock, path(run_dir).open("ab") as f:
        f.write(data)


def last_time(run_dir: Path, stream: str) -> str | None:
    """The timestamp of the stream's last line (where a re-attached log reader resumes),
    read backwards from the end."""
    try:
        f = path(run_dir).open("rb")
    except FileNotFoundError:
        return None
    with f:
        for raw in _lines_backwards(f):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("s") == stream:
                return str(entry["t"]) if entry.get("t") else None
    return None


def _lines_backwards(f: IO[bytes], longest: int = 4 * READ_BYTES) -> Any:
    """The file's complete lines, last first; a line longer than `longest` is skipped."""
    position = f.seek(0, os.SEEK_END)
    carry = b""
    skipping = False
    while position > 0:
        step = min(BLOCK, position)
        position -= step
        f.seek(position)
        parts = (f.read(step) + carry).split(b"\n")
        carry = parts[0]
        for raw in reversed(parts[1:]):
            if raw and not skipping:
                yield raw
            skipping = False
        if len(carry) > longest:
            carry, skipping = b"", True
    if carry and not skipping:
        yield carry


@dataclass(frozen=True, slots=True)
class Chunk:
    lines: list[dict[str, Any]]
    next_offset: int  # where the next read goes on
    size: int = 0  # the log's size when it was read
    more: bool = False  # complete lines are waiting after next_offset: read again at once


def read(
    run_dir: Path, offset: int = 0, limit: int = READ_LINES, max_bytes: int = READ_BYTES
) -> Chunk:
    """Complete lines from byte `offset` on (at most `limit` lines, `max_bytes` bytes);
    `next_offset` is where to continue."""
    try:
        f = path(run_dir).open("rb")
    except FileNotFoundError:
        return Chunk([], offset)
    with f:
        f.seek(offset)
        data = f.read(max_bytes)
        size = max(os.fstat(f.fileno()).st_size, offset + len(data))
        if data and b"\n" not in data and len(data) == max_bytes:
            return _skip_long_line(f, offset, size)
    lines: list[dict[str, Any]] = []
    start = 0
    while len(lines) < limit and (end := data.find(b"\n", start)) >= 0:
        lines.append(_parse(data[start:end]))
        start = end + 1
    capped = len(lines) == limit or len(data) == max_bytes
    return Chunk(lines, offset + start, size, capped and offset + start < size)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(raw)
    except ValueError:
        entry = None
    if isinstance(entry, dict):
        return entry
    return {"t": None, "s": "sys", "m": raw.decode("utf-8", "replace")}


def _skip_long_line(f: IO[bytes], offset: int, size: int) -> Chunk:
    """A line longer than a read (only a log written by something else than dockyard's
    splitter has one): stands in for it with a note, or waits while it is being written."""
    position = f.tell()
    while block := f.read(BLOCK):
        end = block.find(b"\n")
        if end >= 0:
            after = position + end + 1
            note = f"[a log line of {after - 1 - offset} bytes was skipped: longer than one read]"
            line = {"t": None, "s": "sys", "m": note}
            return Chunk([line], after, size, after < size)
        position += len(block)
    return Chunk([], offset, size)


def tail_offset(run_dir: Path, count: int) -> int:
    """Where the last `count` complete lines of the log start (0 when it has fewer)."""
    try:
        f = path(run_dir).open("rb")
    except FileNotFoundError:
        return 0
    with f:
        position = f.seek(0, os.SEEK_END)
        wanted = count + 1  # the newline before the first of them
        while position > 0:
            step = min(BLOCK, position)
            position -= step
            f.seek(position)
            block = f.read(step)
            found = block.count(b"\n")
            if found < wanted:
                wanted -= found
                continue
            end = len(block)
            for _ in range(wanted):
                end = block.rindex(b"\n", 0, end)
            return position + end + 1
    return 0


class _Counts:
    """Complete lines per log file, extended over what was appended since the last count
    (logs only grow), for the most recently counted files."""

    def __init__(self, keep: int = 256) -> None:
        self._known: OrderedDict[Path, tuple[int, int]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def count(self, file: Path) -> int:
        with self._lock:
            done, lines = self._known.pop(file, (0, 0))
        try:
            with file.open("rb") as f:
                if os.fstat(f.fileno()).st_size < done:  # not the file counted before
                    done, lines = 0, 0
                position = f.seek(done)
                while block := f.read(BLOCK * 16):
                    found = block.count(b"\n")
                    if found:  # counted up to the last complete line
                        lines += found
                        done = position + block.rindex(b"\n") + 1
                    position += len(block)
        except FileNotFoundError:
            return 0
        with self._lock:
            self._known[file] = (done, lines)
            while len(self._known) > self._keep:
                self._known.popitem(last=False)
        return lines


_counts = _Counts()


def count_lines(run_dir: Path) -> int:
    """How many complete lines the log has."""
    return _counts.count(path(run_dir))


def redactions(run_dir: Path) -> list[str]:
    """The secret strings a run's log must not show (gone with its configuration when the
    run has ended)."""
    return rundir.read_redactions(run_dir)


TAIL_SCAN_BYTES = 256 * 1024  # how much of a log's end a failure's reason is read from
TAIL_SCAN_LINES = 400


def stream_tail(
    run_dir: Path, stream: str, max_bytes: int = TAIL_SCAN_BYTES, max_lines: int = TAIL_SCAN_LINES
) -> list[str]:
    """The texts of the last lines of one stream (`err`) within the log's last `max_bytes`,
    at most `max_lines` of them, oldest first: what a failed run's reason is read from."""
    try:
        f = path(run_dir).open("rb")
    except FileNotFoundError:
        return []
    with f:
        start = max(f.seek(0, os.SEEK_END) - max_bytes, 0)
        f.seek(start)
        data = f.read(max_bytes)
    raws = data.split(b"\n")
    if start > 0:
        raws = raws[1:]  # a line cut by where the read began
    texts = []
    for raw in raws:
        entry = _parse(raw) if raw else None
        if entry is not None and entry.get("s") == stream and isinstance(entry.get("m"), str):
            texts.append(entry["m"])
    return texts[-max_lines:]
