"""Rendering: `-o json` prints the data as JSON; otherwise a compact human form."""

import json
import re
from collections.abc import Sequence
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    text_rows = [[_cell(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h)
        for i, h in enumerate(headers)
    ]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in text_rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return visible(", ".join(str(v) for v in value), keep="\t\n") or "-"
    return visible(str(value), keep="\t\n")


# C0 controls, DEL and C1 controls: what a terminal acts on (colours, cursor moves, clearing
# the screen, the window title, `\r` over-printing) instead of showing
_CONTROLS = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))


def visible(text: str, keep: str = "\t") -> str:
    """Text that a job (or anyone else) wrote, made safe to print: every control character
    but those in `keep` is shown as an escape (`\\x1b`, `\\r`) instead of acting on the
    reader's terminal."""
    return _control_pattern(keep).sub(_escape, text)


def _escape(match: "re.Match[str]") -> str:
    char = match.group()
    return {"\r": "\\r", "\n": "\\n"}.get(char) or f"\\x{ord(char):02x}"


_patterns: dict[str, "re.Pattern[str]"] = {}


def _control_pattern(keep: str) -> "re.Pattern[str]":
    if keep not in _patterns:
        chars = "".join(c for c in _CONTROLS if c not in keep)
        _patterns[keep] = re.compile(f"[{re.escape(chars)}]")
    return _patterns[keep]


def short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


def log_line(line: dict[str, Any]) -> str:
    """One log line for the terminal: time, `» ` for dockyard's own, the text made visible."""
    stamp = visible(str(line.get("t") or ""))[11:19]
    prefix = "» " if line.get("s") == "sys" else ""
    return f"{stamp} {prefix}{visible(str(line.get('m', '')))}"


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {_cell(value)}")


def output_option(func: Any) -> Any:
    return click.option(
        "-o",
        "--output",
        "output_fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        help="Output format.",
    )(func)


def workspace_option(func: Any) -> Any:
    return click.option(
        "-w",
        "--workspace",
        default=None,
        help="Workspace (default: DOCKYARD_WORKSPACE, then the saved one).",
    )(func)
