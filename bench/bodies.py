"""Server memory while clients stream huge request bodies at unauthenticated endpoints.

A real server process. Ten clients each send a 1 GB body (generated chunk by chunk, never
held in the client's memory) at endpoints anyone can reach without a token: the beacon
(`PUT /beacon/<token>/job_result`, a made-up token), the login form (`POST /ui/login`), a
JSON API route (`POST /api/v1/workspaces`, no token) and git (`POST
/git/<ws>.git/git-receive-pack`, no token). Each client declares its length
(`Content-Length: 1 GB`) or streams it chunked (no length), and is stubborn: it goes on
sending after the server has answered, until the whole body is sent or the server closes the
connection.

Figures: the server's resident memory when idle (after a warm-up request to each endpoint),
its peak during the attack (`VmHWM`, which the kernel keeps, and the largest `VmRSS` sampled
every 20 ms), how many bytes each client got to send before the answer, and the answers.

A second round sends bodies just under the caps instead, the most a client can make the
server read without a token: 10 clients x 20 requests each of a 1 MiB JSON list of empty
objects to the API (parsed before the token is checked; about 350,000 objects each) and a
64 KiB form to the login page.

The bound to hold: peak ≤ idle + 10 clients x what one request under its cap may cost
(dockyard/web/limits.py) — far less than the bodies sent, since a declared length over the
cap is refused before any byte is read and a streamed body is cut off at the cap.

Usage: python bench/bodies.py [--clients 10] [--mb 1000] [--json-out FILE]
"""

import select
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import Report, int_arg, json_out, print_machine, running_server

CHUNK = 64 * 1024
ENDPOINTS = (
    ("beacon", "PUT", "/beacon/0b7e5c1e-3f7a-4c55-9d1f-2f8f7d0f4a11.deadbeef/job_result"),
    ("login", "POST", "/ui/login"),
    ("api", "POST", "/api/v1/workspaces"),
    ("git", "POST", "/git/bench.git/git-receive-pack"),
)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Outcome:
    endpoint: str
    mode: str
    sent: int = 0
    status: str = "no answer"
    seconds: float = 0.0


def body(total: int) -> Iterator[bytes]:
    """`total` bytes in chunks, made as they are sent."""
    chunk = b"x" * CHUNK
    left = total
    while left > 0:
        yield chunk[: min(CHUNK, left)]
        left -= CHUNK


def attack(port: int, endpoint: tuple[str, str, str], chunked: bool, total: int) -> Outcome:
    name, method, path = endpoint
    outcome = Outcome(name, "chunked" if chunked else "declared")
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    kind = "application/x-www-form-urlencoded" if name == "login" else "application/json"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}\r\n"
        f"{framing}\r\n\r\n"
    )
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(head.encode())
        answered = False
        try:
            for piece in body(total):
                if not answered and select.select([sock], [], [], 0)[0]:
                    outcome.status, answered = _status(sock), True  # and go on sending
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                outcome.sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection while we were sending
        if not answered:
            outcome.status = _status(sock)
    outcome.seconds = time.monotonic() - start
    return outcome


def _status(sock: socket.socket) -> str:
    try:
        first = sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError as exc:
        return f"connection error ({type(exc).__name__})"
    return first.split(" ", 2)[1] if first.startswith("HTTP/") else "closed without an answer"


def under_cap(port: int, name: str, repeat: int) -> list[str]:
    """`repeat` requests with bodies just under the caps of the API or the login form."""
    if name == "api":
        path, kind, payload = "/api/v1/workspaces", "application/json", _json_list(1 << 20)
    else:
        path, kind, payload = "/ui/login", "application/x-www-form-urlencoded", _form(64 << 10)
    statuses = []
    for _ in range(repeat):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
            sock.sendall(head.encode() + payload)
            statuses.append(_status(sock))
    return statuses


def _json_list(size: int) -> bytes:
    return b"[" + b",".join([b"{}"] * ((size - 2) // 3)) + b"]"


def _form(size: int) -> bytes:
    return b"token=" + b"x" * (size - 6)


def sample_peak(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        time.sleep(0.02)


def bench(clients: int, megabytes: int) -> Report:
    total = megabytes * 1_000_000
    with (
        tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name,
        running_server(Path(tmp_name)) as server,
    ):
        assert server.proc is not None
        pid = server.proc.pid
        for endpoint in ENDPOINTS:  # warm-up: every route imported and answered once
            attack(server.port, endpoint, chunked=False, total=16)
        time.sleep(1)
        idle = rss_kib(pid)
        stop, peak = threading.Event(), [idle]
        sampler = threading.Thread(target=sample_peak, args=(pid, stop, peak))
        sampler.start()
        outcomes: list[Outcome] = []
        started = time.monotonic()
        threads = []
        for i in range(clients):
            endpoint = ENDPOINTS[i % len(ENDPOINTS)]
            chunked = (i // len(ENDPOINTS)) % 2 == 1

            def client(e: tuple[str, str, str] = endpoint, c: bool = chunked) -> None:
                outcomes.append(attack(server.port, e, c, total))

            threads.append(threading.Thread(target=client))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        hwm = rss_kib(pid, "VmHWM")
        alive = server.proc.poll() is None
        under = under_cap_round(server.port, pid, clients)
    out = report(clients, megabytes, idle, max(peak[0], 0), hwm, elapsed, alive, outcomes)
    peak_under, hwm_under, statuses = under
    out.add(
        f"bodies under the caps: {clients} clients x 20 (API 1 MiB JSON, login 64 KiB)",
        f"answers {', '.join(f'{k}x{v}' for k, v in sorted(statuses.items()))}",
    )
    out.add("  server RSS peak sampled [MiB]", f"{peak_under / 1024:.1f}", "under_peak_mib")
    out.add("  server VmHWM afterwards [MiB]", f"{hwm_under / 1024:.1f}", "under_hwm_mib")
    return out


def under_cap_round(port: int, pid: int, clients: int) -> tuple[int, int, dict[str, int]]:
    stop, peak = threading.Event(), [rss_kib(pid)]
    sampler = threading.Thread(target=sample_peak, args=(pid, stop, peak))
    sampler.start()
    statuses: dict[str, int] = {}

    def client(name: str) -> None:
        for status in under_cap(port, name, 20):
            statuses[status] = statuses.get(status, 0) + 1

    threads = [
        threading.Thread(target=client, args=("api" if i % 2 else "login",)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    sampler.join()
    return peak[0], rss_kib(pid, "VmHWM"), statuses


def report(
    clients: int,
    megabytes: int,
    idle: int,
    peak: int,
    hwm: int,
    elapsed: float,
    alive: bool,
    outcomes: list[Outcome],
) -> Report:
    out = Report("request bodies: server memory under 1 GB bodies")
    out.add("clients x body", f"{clients} x {megabytes} MB")
    out.add("server RSS idle [MiB]", f"{idle / 1024:.1f}", "idle_mib")
    out.add("server RSS peak sampled [MiB]", f"{peak / 1024:.1f}", "peak_mib")
    out.add("server VmHWM (peak since start) [MiB]", f"{hwm / 1024:.1f}", "hwm_mib")
    out.add("peak - idle [MiB]", f"{(max(peak, hwm) - idle) / 1024:.1f}", "growth_mib")
    out.add("attack wall time [s]", elapsed, "elapsed_s")
    out.add("server still up", "yes" if alive else "NO", "alive")
    for o in sorted(outcomes, key=lambda o: (o.endpoint, o.mode)):
        out.add(
            f"{o.endpoint} ({o.mode})",
            f"answer {o.status}; {o.sent / 1e6:.2f} MB sent before the server closed,"
            f" {o.seconds:.2f} s",
        )
    out.figures["outcomes"] = [o.__dict__ for o in outcomes]
    out.figures["headline"] = f"peak {max(peak, hwm) / 1024:.0f} MiB vs idle {idle / 1024:.0f} MiB"
    return out


def main(argv: list[str]) -> int:
    print_machine()
    result = bench(int_arg(argv, "--clients", 10), int_arg(argv, "--mb", 1000))
    result.show()
    result.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
