"""The one line splitter of every run log: a job's raw output in, bounded, redacted lines out.

Both executors use it: the supervisor (`supervisor.py`, local runs) feeds it what it reads
from the job's pipes, and the controller's Docker log follower feeds it the text of Docker's
log messages (a line longer than 16 KiB arrives as several fragments, which it re-joins).
So a line means the same in both, whatever the pipe cut it into:

- **Bounded.** A line keeps at most `MAX_LINE` bytes; the rest is counted and dropped as it
  arrives, and the line ends with `[line truncated: N bytes]`. Memory stays below
  `MAX_LINE` plus the longest secret, and time is linear in the output, however long the line
  and wherever the reads cut it.
- **Redacted as a whole.** Secrets are replaced by `***` on the joined line, never on a piece
  of it, so no split (pipe reads, Docker fragments, the cut at `MAX_LINE`) lets one through
  in two halves. The kept head is long enough to hold any secret that starts before the cut,
  and the cut moves past a redacted secret rather than into it.

Standard library only: the supervisor runs with `python -S` and imports this module from its
own folder.
"""

import re
from collections.abc import Callable, Iterable

MAX_LINE = 64 * 1024  # bytes of one line that a log keeps
READ_SIZE = 64 * 1024  # how much a reader takes from a pipe at once
REDACTED = b"***"


class Redactor:
    """The secret values a run's log must not show, matched as UTF-8 bytes, longest first
    (so a secret that contains another is hidden whole)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        wanted = sorted({s.encode() for s in secrets if s}, key=lambda v: (-len(v), v))
        self.longest = len(wanted[0]) if wanted else 0
        self._pattern = re.compile(b"|".join(map(re.escape, wanted))) if wanted else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, data: bytes, before: int | None = None) -> tuple[bytes, int]:
        """`data` with every secret that starts before `before` (default: anywhere) replaced,
        cut at `before` or after the last secret that straddles it; and where, in `data`,
        that cut is."""
        end = len(data) if before is None else before
        if self._pattern is None:
            return data[:end], end
        parts: list[bytes] = []
        done = 0
        for match in self._pattern.finditer(data):
            if match.start() >= end:
                break
            parts += (data[done : match.start()], REDACTED)
            done = match.end()
            end = max(end, done)
        parts.append(data[done:end])
        return b"".join(parts), end


def _char_boundary(data: bytes, cut: int) -> int:
    """`cut` moved back to the start of a UTF-8 character (a cut never splits one): back
    over the continuation bytes (0b10xxxxxx, at most three) that follow it."""
    back = cut
    while back > max(0, cut - 3) and back < len(data) and (data[back] & 0xC0) == 0x80:
        back -= 1
    return back


def render(line: bytes, dropped: int, redactor: Redactor | None, max_line: int) -> str:
    """One line as it goes into the log: redacted, cut at `max_line` with the marker when it
    is longer (`dropped` bytes of it were never kept), decoded (invalid UTF-8 becomes U+FFFD)."""
    if not dropped and len(line) <= max_line:
        text = redactor.redact(line)[0] if redactor else line
        return text.decode("utf-8", "replace")
    cut = _char_boundary(line, max_line)
    kept, cut = redactor.redact(line, cut) if redactor else (line[:cut], cut)
    lost = len(line) - cut + dropped
    return kept.decode("utf-8", "replace") + f" [line truncated: {lost} bytes]"


class LineSplitter:
    """Cuts a byte stream into lines (`\\n`; a `\\r` before it is dropped too) and hands each,
    rendered, to `emit`. Feed it pieces of any size; `close()` emits an unfinished last line."""

    def __init__(
        self,
        emit: Callable[[str], None],
        redactor: Redactor | None = None,
        max_line: int = MAX_LINE,
    ) -> None:
        self._emit = emit
        self._redactor = redactor if redactor else None
        self._max = max_line
        # room to see whether the cut splits a character, and for a secret that starts just
        # before the cut, so it is redacted whole
        self._keep = max_line + 4 + (redactor.longest if redactor else 0)
        self._line = bytearray()
        self._dropped = 0
        self._cr = False  # the line's last byte so far is `\r`

    def redact_with(self, redactor: Redactor | None) -> None:
        """From now on hide these secrets (a held run learns its secrets when released)."""
        self._redactor = redactor if redactor else None
        self._keep = self._max + 4 + (redactor.longest if redactor else 0)

    def feed(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._take(data, start, end)
            self._finish()
            start = end + 1
        self._take(data, start, len(data))

    def close(self) -> None:
        """The stream ended: a last line without a newline is still a line."""
        if self._line or self._dropped:
            self._finish()

    def _take(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        room = max(0, min(end - start, self._keep - len(self._line)))
        if room:
            self._line += data[start : start + room]
        self._dropped += end - start - room
        self._cr = data[end - 1] == 0x0D

    def _finish(self) -> None:
        line, dropped = bytes(self._line), self._dropped
        if self._cr:  # `\r\n`: the `\r` belongs to the line's end, not to its text
            if dropped:
                dropped -= 1
            else:
                line = line[:-1]
        self._line.clear()
        self._dropped, self._cr = 0, False
        self._emit(render(line, dropped, self._redactor, self._max))
