"""Attacks on run logs (issue 10, items 7, 8 and 13): output built to break the log pipe,
leak a secret through it, take over the terminal of whoever reads it, or bury it.

The offsets are what an attacker knows about the pipe: Docker cuts a line into 16 KiB
fragments, and dockyard's supervisor used to cut it every 64 KiB.
"""

import sys
import time

import dlt
from dlt.hub import run

MB = 1 << 20
HUGE_LINE_MB = 48  # big enough to show the bound; the benchmark prints 300 MB
DOCKER_FRAGMENT = 16 * 1024
OLD_SPLIT = 64 * 1024


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@run.job
def logs_huge_line() -> None:
    """48 MB on stdout without a newline, then ordinary lines."""
    print("PROBE logs_huge_line started", flush=True)
    chunk = b"x" * MB
    for _ in range(HUGE_LINE_MB):
        _write(chunk)
    _write(b"\nPROBE logs_huge_line after ok\n")
    print("to stderr after the huge line", file=sys.stderr, flush=True)


@run.job
def logs_secret_split() -> None:
    """Prints its secret across Docker's fragment boundary (in two writes, so the pipe
    delivers it in two reads as well) and across the old 64 KiB split."""
    key = str(dlt.secrets["sources.logs.key"])
    head = b"a" * (DOCKER_FRAGMENT - 5) + key[:5].encode()
    _write(head)
    time.sleep(0.3)
    _write(key[5:].encode() + b"b" * 10 + b"\n")
    _write(b"a" * (OLD_SPLIT - 5) + key.encode() + b"b" * 10 + b"\n")
    print("PROBE logs_secret_split printed 2", flush=True)


@run.job
def logs_escapes() -> None:
    """Terminal control sequences: window title, clear screen, colours, a C1 CSI, a bell,
    backspaces and a carriage return that would hide what came before it."""
    print("title \x1b]0;pwned\x07 clear \x1b[2J\x1b[H red \x1b[31mRED\x1b[0m", flush=True)
    print("c1 \x9b31m csi, bell \x07, back ab\x08\x08XY, del \x7f", flush=True)
    print("tab\tkept, hidden\rSHOWN", flush=True)
    run.result({"note": "\x1b]0;pwned-result\x07"}, type="escapes")
    print("PROBE logs_escapes printed 3", flush=True)


MILLION = 1_000_003


@run.job
def logs_million_lines() -> None:
    """Prints 1,000,003 short lines (the CLI used to show 5,000 of them without a word)."""
    out = sys.stdout
    for start in range(0, MILLION, 10_000):
        out.write("".join(f"line {i}\n" for i in range(start, min(start + 10_000, MILLION))))
    out.flush()


WIDE_LINES = 2_100
WIDE = 62 * 1024


@run.job
def logs_wide_lines() -> None:
    """2,100 lines of 62 KiB (130 MB): one unbounded read of it is 130 MB of JSON."""
    body = "w" * (WIDE - 12)
    out = sys.stdout
    for i in range(WIDE_LINES):
        out.write(f"{i:010d} {body}\n")
    out.flush()
    print("PROBE logs_wide_lines printed", flush=True)


__all__ = [
    "logs_escapes",
    "logs_huge_line",
    "logs_million_lines",
    "logs_secret_split",
    "logs_wide_lines",
]
