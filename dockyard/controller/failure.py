"""Why a run failed, in one line: the exception that ended it, read from the end of its log.

A job that raises ends with Python's traceback on stderr and exit code 1; the exit code says
nothing, the last lines say everything. This module turns the tail of a run's stderr into
`ModuleNotFoundError: No module named 'ibis' (usgs/transformations.py:13)`: the exception's
type (its last dotted name), the first line of its message, and the innermost frame of the
workspace's own code (a path under the checkout, relative to it; frames of dlt, other
packages, the standard library and dockyard's shim are passed over).

Why the log and not a hook in the job's interpreter: both executors already write the log the
same way (`shim/loglines.py`: streams marked, lines bounded, secrets replaced by `***`), so the
reason needs no new channel out of a sandbox or a container, shows no secret the log does not,
and covers launchers that `exec` another interpreter (module, marimo, streamlit), where a hook
set by the shim would be gone. The shim adds one thing Python does not print:
`SystemExit: <message>` for `sys.exit("message")` (`dlt_shim.launch`).

How a traceback is read (Python 3.11's format):
- chained exceptions print oldest first, each block after "The above exception was the direct
  cause…" or "During handling of the above exception…": the last block ended the run;
- dlt wraps a failing step: `PipelineStepFailed` (a direct cause chain through
  `ResourceExtractionError`…) whose own first line is "Pipeline execution failed at
  `step=extract`…". The exception a person must fix is the first one in the chain that is
  not dlt's, so a dlt exception raised `from` another gives way to that one (the step is kept:
  "…, in dlt's extract step");
- a multi-line message gives its first non-empty line; a SyntaxError's file and line are its
  last `File` line.

Everything a job prints is hostile: the caller reads only the tail of the log (`logs.tail`),
the final exception must be within `RECENT` lines of the end, the reason is at most
`REASON_MAX` characters and the stored traceback `TAIL_LINES` lines and `TAIL_BYTES`
bytes. A job can print a fake traceback: the reason is then what it printed, which is the
job's own account of its failure, shown as text and never acted upon.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

HEADER = "Traceback (most recent call last):"
CAUSE = "The above exception was the direct cause of the following exception:"
DURING = "During handling of the above exception, another exception occurred:"
SYSTEM_EXIT = "SystemExit: "  # the shim's line for `sys.exit("message")`
REASON_MAX = 300  # characters of the one-line reason
TAIL_LINES = 30  # lines of the stored traceback
TAIL_BYTES = 8 * 1024  # bytes of the stored traceback
LINE_MAX = 500  # characters of one stored traceback line
RECENT = 60  # the final exception's line is at most this many lines from the end
_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in .*)?$')
_TYPE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?:: (?P<message>.*))?$")
_CARETS = re.compile(r"^\s+[\^~]+\s*$")
_STEP = re.compile(r"failed at `step=(?P<step>\w+)`")


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a run failed: one line, and the end of the traceback it was read from."""

    reason: str
    traceback: str | None


@dataclass(frozen=True, slots=True)
class _Block:
    """One exception of a (possibly chained) traceback as printed."""

    lines: list[str]  # from its "Traceback" header to its message's last line
    frames: list[tuple[str, int]]  # (path, line), outermost first
    type: str
    message: list[str]
    caused: bool  # printed after "The above exception was the direct cause…"
    at: int  # index of its exception line in the lines read


def explain(lines: Sequence[str], roots: Sequence[str]) -> Failure | None:
    """The failure the stderr `lines` (oldest first) end with; None when they end with no
    traceback (the caller falls back to the exit code or signal). `roots` are the paths the
    workspace's code may have run from (the checkout on the host, its path in a container)."""
    blocks = _chain(list(lines))
    if not blocks or blocks[-1].at < len(lines) - RECENT:
        return _system_exit(lines)
    chosen = _unwrap(blocks)
    step = _step(blocks[-1]) if chosen is not blocks[-1] else None
    where = _where(blocks[blocks.index(chosen) :], roots)
    at = f" ({where})" if where else ""
    reason = f"{_short(chosen.type)}: {_first(chosen.message)}".rstrip(": ")
    reason = _clip(reason, REASON_MAX - len(at)) + at
    if step:
        reason += f", in dlt's {step} step"
    return Failure(_clip(reason, REASON_MAX), _tail(chosen, roots))


def _chain(lines: list[str]) -> list[_Block]:
    """The blocks of the last traceback in `lines`: from its first block (the header not
    preceded by a chaining sentence) to the end."""
    headers = [i for i, line in enumerate(lines) if line == HEADER]
    if not headers:
        return []
    start = headers[-1]
    while start > 0 and _link(lines, start) is not None:
        earlier = [i for i in headers if i < start]
        if not earlier:
            break
        start = earlier[-1]
    blocks = []
    for begin in (i for i in headers if i >= start):
        block = _block(lines, begin, _link(lines, begin) == CAUSE)
        if block is None:
            return []
        blocks.append(block)
    return blocks


def _link(lines: list[str], header: int) -> str | None:
    """The chaining sentence printed (with a blank line around it) just before a header."""
    for back in (2, 1):
        if header >= back and lines[header - back] in (CAUSE, DURING):
            return lines[header - back]
    return None


def _block(lines: list[str], header: int, caused: bool) -> _Block | None:
    """Parse one block: indented frame lines, then `Type: message` and its continuation up to
    the next chaining sentence (or the end)."""
    frames, i = [], header + 1
    while i < len(lines) and lines[i].startswith(" "):
        match = _FRAME.match(lines[i])
        if match:
            frames.append((match["path"], int(match["line"])))
        i += 1
    if i >= len(lines) or not frames:
        return None
    head = _TYPE.match(lines[i])
    if head is None:
        return None
    end = i + 1
    while end < len(lines) and lines[end] not in (CAUSE, DURING, HEADER):
        end += 1
    message = [head["message"] or "", *lines[i + 1 : end]]
    while end > i + 1 and not lines[end - 1].strip():
        end -= 1
    return _Block(lines[header:end], frames, head["type"], message, caused, i)


def _unwrap(blocks: list[_Block]) -> _Block:
    """The exception to fix: the last one, unless dlt raised it `from` another."""
    index = len(blocks) - 1
    while index > 0 and blocks[index].caused and blocks[index].type.startswith("dlt."):
        index -= 1
    return blocks[index]


def _step(final: _Block) -> str | None:
    match = _STEP.search(" ".join(final.message[:1]))
    return match["step"] if match else None


def _where(blocks: list[_Block], roots: Sequence[str]) -> str | None:
    """`path:line` of the innermost workspace frame of the first block having one."""
    prefixes = [root.rstrip("/") + "/" for root in roots if root.strip("/")]
    for block in blocks:
        for path, line in reversed(block.frames):
            for prefix in prefixes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    return f"{path[len(prefix) :]}:{line}"
    return None


def _system_exit(lines: Sequence[str]) -> Failure | None:
    """`sys.exit("message")`: the shim's `SystemExit: message` among the last lines (a
    message of several lines continues after it)."""
    for line in reversed(lines[-RECENT:]):
        if line.startswith(SYSTEM_EXIT) and line[len(SYSTEM_EXIT) :].strip():
            return Failure(_clip(line.strip(), REASON_MAX), None)
    return None


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def _first(message: list[str]) -> str:
    return next((line.strip() for line in message if line.strip()), "")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _tail(block: _Block, roots: Sequence[str]) -> str:
    """The block's last `TAIL_LINES` lines, each cut to `LINE_MAX`, within `TAIL_BYTES`;
    workspace paths relative to the checkout like the reason's, and Python's `^^^^` marker
    lines left out (more frames fit) except under a SyntaxError, where they point at it."""
    prefixes = [f'"{root.rstrip("/")}/' for root in roots if root.strip("/")]
    carets = _short(block.type) in ("SyntaxError", "IndentationError", "TabError")
    lines = [_relative(line, prefixes) for line in block.lines if carets or not _CARETS.match(line)]
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-TAIL_LINES:]):
        line = line if len(line) <= LINE_MAX else line[: LINE_MAX - 1] + "…"
        size += len(line.encode()) + 1
        if size > TAIL_BYTES:
            break
        kept.append(line)
    return "\n".join(reversed(kept))


def _relative(line: str, prefixes: list[str]) -> str:
    if line.startswith('  File "'):
        for prefix in prefixes:
            if prefix in line:
                return line.replace(prefix, '"', 1)
    return line
