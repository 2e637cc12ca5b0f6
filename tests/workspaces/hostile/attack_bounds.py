"""Attacks on the server's bounds from inside a run: its beacon (issue 10, items 6 and 9).

A run's beacon DSN is in its environment (`RUNTIME__DLTHUB_DSN`); dlt PUTs its job result,
traces and state there, and so can anything the job does. These jobs try to store more than
a run may, and print their DSN so that a test can replay it after the run has ended.
"""

import json
import os
import select
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from dlt.hub import run


def _put(kind: str, body: Iterable[bytes], length: int | None = None) -> int:
    """PUT to this run's own beacon, with a declared `length` or chunked; the HTTP status,
    read as soon as the server answers (it may answer before the body is sent), or -1 if it
    hung up without one."""
    dsn = urlsplit(os.environ["RUNTIME__DLTHUB_DSN"])
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"PUT {dsn.path}/{kind} HTTP/1.1\r\nHost: {dsn.netloc}\r\n{framing}\r\n\r\n"
    with socket.create_connection((dsn.hostname, dsn.port), timeout=60) as sock:
        try:
            sock.sendall(head.encode())
            for piece in body:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered already
                sock.sendall(piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                if length is None:
                    sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        try:
            status = sock.recv(64).split(b" ")[1]
        except (OSError, IndexError):
            return -1
    return int(status)


def _megabytes(count: int) -> Iterable[bytes]:
    """A JSON object of `count` MiB, made piece by piece."""
    yield b'{"junk": "'
    for _ in range(count):
        yield b"x" * (1 << 20)
    yield b'"}'


@run.job
def bounds_result() -> None:
    """Reports a result, then prints its beacon DSN where anyone reading the log can see it."""
    run.result({"rows": 42}, type="bounds")
    print(f"PROBE bounds_dsn {os.environ['RUNTIME__DLTHUB_DSN']}", flush=True)


@run.job
def bounds_beacon_flood() -> None:
    """Stores trace payloads until refused, then sends one too large and one streamed (no
    length) past the size cap; a normal job result still goes through first."""
    ok = json.dumps({"ok": 1}).encode()
    print(f"PROBE bounds_result_ok {_put('job_result', [ok], len(ok))}", flush=True)
    statuses = []
    for i in range(50):
        trace = json.dumps({"n": i}).encode()
        statuses.append(_put("trace", [trace], len(trace)))
    accepted = statuses.count(200)
    refused = sorted({s for s in statuses if s != 200})
    print(f"PROBE bounds_beacon_count accepted={accepted} refused={refused}", flush=True)
    declared = 64 * (1 << 20) + 12
    print(f"PROBE bounds_beacon_size {_put('state', _megabytes(64), declared)}", flush=True)
    print(f"PROBE bounds_beacon_stream {_put('state', _megabytes(64))}", flush=True)


__all__ = ["bounds_beacon_flood", "bounds_result"]
