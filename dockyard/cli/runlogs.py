"""A run's log in the terminal: read from the server one bounded page at a time.

The server answers at most 1 MiB of log per request, so the CLI pages (`offset` →
`next_offset` while `more`) and never asks for more than it prints. `logs` shows the last
lines by default and says so when that is only part of the log; `--head`, `--tail` and
`--all` choose otherwise. Every line goes through `output.log_line`, which shows control
characters instead of letting them act on the terminal.
"""

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from dockyard.cli import output
from dockyard.cli.client import Client
from dockyard.errors import InvalidInput

DEFAULT_TAIL = 200
POLL_S = 0.3


def _path(run_id: str) -> str:
    return f"/api/v1/runs/{run_id}/logs"


@dataclass(frozen=True, slots=True)
class Window:
    """Which lines to show: the first `head`, the last `tail`, or every line."""

    head: int | None = None
    tail: int | None = DEFAULT_TAIL

    @property
    def everything(self) -> bool:
        return self.head is None and self.tail is None

    def first_read(self) -> dict[str, Any]:
        if self.head is not None:
            return {"offset": 0, "limit": min(self.head, 5000), "count": True}
        if self.tail is not None:
            return {"tail": self.tail, "count": True}
        return {"offset": 0, "count": True}

    def notice(self, shown: int, total: int | None) -> str | None:
        """What the reader is not seeing (None: they see every line)."""
        if self.everything or total is None or shown >= total:
            return None
        which = "first" if self.head is not None else "last"
        return f"showing the {which} {shown:,} of {total:,} lines; --all for everything"


def window(head: int | None, tail: int | None, everything: bool, follow: bool) -> Window:
    if sum((head is not None, tail is not None, everything)) > 1:
        raise InvalidInput("choose one of --head, --tail and --all")
    if head is not None and follow:
        raise InvalidInput("--head shows the start of the log; -f follows its end: use one")
    if everything:
        return Window(None, None)
    return Window(head, tail if tail is not None or head is not None else DEFAULT_TAIL)


def window_options(func: Any) -> Any:
    """`--head N`, `--tail N`, `--all` on a command that prints a log."""
    func = click.option("--all", "everything", is_flag=True, help="Every line of the log.")(func)
    func = click.option(
        "--tail",
        type=click.IntRange(min=0),
        default=None,
        help=f"The last N lines (default: the last {DEFAULT_TAIL}).",
    )(func)
    return click.option(
        "--head", type=click.IntRange(min=1), default=None, help="The first N lines."
    )(func)


def _pages(client: Client, run_id: str, first: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pages from the first read up to the log's size at that read (a running job's
    later lines are for -f)."""
    chunk: dict[str, Any] = client.get(_path(run_id), **first)
    end = chunk["size"]
    yield chunk
    while chunk["more"] and chunk["next_offset"] < end:
        chunk = client.get(_path(run_id), offset=chunk["next_offset"])
        yield chunk


def show(client: Client, run_id: str, win: Window, fmt: str) -> int:
    """Print the chosen lines (or, with `-o json`, the run's log answer holding them);
    returns the offset where following would go on."""
    shown: list[dict[str, Any]] = []
    count, first, next_offset = 0, None, 0
    for chunk in _pages(client, run_id, win.first_read()):
        first = first or chunk
        lines = chunk["lines"]
        if win.head is not None:
            lines = lines[: win.head - count]
        count += len(lines)
        next_offset = chunk["next_offset"]
        if fmt == "json":
            shown.extend(lines)
        else:
            for line in lines:
                click.echo(output.log_line(line))
        if win.head is not None and count >= win.head:
            break
    assert first is not None
    total = first["line_count"]
    if fmt == "json":
        keys = ("run_id", "status", "done")
        output.emit_json(
            {
                **{k: first[k] for k in keys},
                "lines": shown,
                "line_count": total,
                "next_offset": next_offset,
            }
        )
    notice = win.notice(count, total)
    if notice:
        click.echo(notice, err=True)
    return next_offset


def follow(client: Client, run_id: str, out: Any = None, offset: int = 0) -> dict[str, Any]:
    """Print the run's log from `offset` as it grows until the run ends; return the final
    run."""
    while True:
        chunk = client.get(_path(run_id), offset=offset)
        for line in chunk["lines"]:
            click.echo(output.log_line(line), file=out)
        offset = chunk["next_offset"]
        if chunk["done"] and not chunk["lines"]:
            run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}")
            return run
        if not chunk["lines"]:
            time.sleep(POLL_S)


def finish(run: dict[str, Any]) -> None:
    """Say how the run ended; exit 1 unless it completed."""
    reason = f" ({output.visible(run['reason'])})" if run.get("reason") else ""
    click.echo(f"run #{run['number']} of {run['job_ref']}: {run['status']}{reason}", err=True)
    if run["status"] != "completed":
        sys.exit(1)
