"""Proxy overhead: sequential small GETs to a tiny app, straight to its port (the floor) and
through the server's proxy (the app's own origin, `http://<app>--<ws>.apps.localhost:<port>/`,
with a bearer token), and the difference.

A real server process and the real CLI: a workspace with one interactive job (a stdlib HTTP
server speaking HTTP/1.1 with keep-alive) is deployed and served (`dockyard serve`). Then N
sequential GETs each way, in alternating blocks so that drift on the shared machine hits
both, each with one keep-alive client (httpx). Every proxied request is authenticated (a
token lookup), is routed by its `Host` header to the app's origin, finds the app's running
instance, and is streamed through. `*.localhost` names resolve to loopback here as in
browsers (the system's resolver may not know them).

Also, for scale: `GET /api/v1/me` on the same server (a request that checks the token and
answers, no app behind it), and a 4 MiB response, direct and proxied (median of 20), for the
streaming cost.

Usage: python bench/proxy.py [-n 2000] [--json-out FILE]
"""

import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import (
    Cli,
    Report,
    int_arg,
    json_out,
    median,
    percentile,
    print_machine,
    pyproject,
    running_server,
    write_files,
)

TARGET_OVERHEAD_S = 0.005  # p50 proxied - p50 direct
BLOCK = 50
BIG_REPEAT = 20
DEPLOYMENT = '''"""A tiny app for the proxy benchmark."""

from dlt.hub import run


@run.interactive(interface="rest_api", execute={"timeout": {"timeout": 3600, "grace_period": 1}})
def tiny(run_context):
    """`GET /` answers `ok`, `GET /big` 4 MiB; HTTP/1.1 with keep-alive."""
    import http.server

    big = b"x" * (4 << 20)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

        def do_GET(self):
            body = big if self.path.endswith("/big") else b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = run_context["run_args"]["port"]
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


__all__ = ["tiny"]
'''


def timed_gets(client: httpx.Client, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(url)
        response.read()
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return times


def interleaved(series: list[Callable[[int], list[float]]], total: int) -> list[list[float]]:
    """Each series `total` times, in alternating blocks (drift hits them all alike)."""
    out: list[list[float]] = [[] for _ in series]
    while len(out[0]) < total:
        block = min(BLOCK, total - len(out[0]))
        for times, measure in zip(out, series, strict=True):
            times += measure(block)
    return out


def bench(requests: int) -> Report:
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ws = write_files(
            tmp / "ws",
            {
                ".dlt/.workspace": "",
                "pyproject.toml": pyproject("proxy-bench"),
                "__deployment__.py": DEPLOYMENT,
            },
        )
        with running_server(tmp) as server:
            cli = Cli(server, tmp / "home", "bench-proxy")
            cli.run("deploy", cwd=ws)
            served = cli.json("serve", "tiny")
            port = served["entry_point"]["run_args"]["port"]
            direct_url, proxied_url = f"http://127.0.0.1:{port}/", served["url"]
            headers = {"Authorization": f"Bearer {server.token}"}
            with (
                httpx.Client(trust_env=False) as plain,
                httpx.Client(trust_env=False, headers=headers) as authed,
            ):
                series = [
                    lambda n: timed_gets(plain, direct_url, n),
                    lambda n: timed_gets(authed, proxied_url, n),
                    lambda n: timed_gets(authed, server.url + "/api/v1/me", n),
                ]
                interleaved(series, 200)  # warm-up: connections, bytecode, caches
                direct, proxied, api = interleaved(series, requests)
                big_direct, big_proxied = interleaved(
                    [
                        lambda n: timed_gets(plain, direct_url + "big", n),
                        lambda n: timed_gets(authed, proxied_url + "big", n),
                    ],
                    BIG_REPEAT,
                )
            # runs outlive their server: stop the app (SIGKILL after its 1 s grace)
            cli.run("job-run", "tiny", "cancel")
            while cli.json("job-run", "tiny", "info")["status"] != "cancelled":
                time.sleep(0.2)
    return report(direct, proxied, api, big_direct, big_proxied)


def report(
    direct: list[float],
    proxied: list[float],
    api: list[float],
    big_direct: list[float],
    big_proxied: list[float],
) -> Report:
    rep = Report("proxy overhead: sequential small GETs, proxied vs direct to the app's port")
    rep.figures["floor"] = "the same GET straight to the app's port"
    rep.add_spread("direct", direct, "direct")
    rep.add_spread("proxied", proxied, "proxied")
    rep.add_spread("for scale: GET /api/v1/me (token check, no app)", api, "api_me")
    for q in (50, 95):
        diff = percentile(proxied, q) - percentile(direct, q)
        rep.add(f"difference p{q} proxied - direct [ms]", f"{diff * 1000:.2f}", f"diff_p{q}_ms")
        rep.figures[f"diff_p{q}_ms"] = diff * 1000
    rep.add(
        "4 MiB response: direct / proxied, median [ms]",
        f"{median(big_direct) * 1000:.1f} / {median(big_proxied) * 1000:.1f}",
    )
    rep.figures["big_direct_s"] = median(big_direct)
    rep.figures["big_proxied_s"] = median(big_proxied)
    rep.headline(proxied, direct, TARGET_OVERHEAD_S, over_floor=True)
    for key in ("samples", "floor_samples"):  # thousands: the spreads above stand for them
        rep.figures.pop(key)
    return rep


def resolve_localhost() -> None:
    """`*.localhost` → loopback (RFC 6761), as browsers resolve apps' origins."""
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower().endswith(".localhost"):
            host = "localhost"
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def main(argv: list[str]) -> int:
    resolve_localhost()
    requests = int_arg(argv, "-n", 2000)
    print_machine()
    rep = bench(requests)
    rep.show()
    rep.write(json_out(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
