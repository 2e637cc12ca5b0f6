"""Jobs for the Docker executor tests."""

import os
import sys
import time

import dlt
from dlt.hub import run


@run.job
def hello(greeting: str = dlt.config.value):
    print(f"greeting: {greeting}")
    print(f"cwd {os.getcwd()}")
    print("to stderr", file=sys.stderr)
    run.result({"greeting": greeting}, type="hello")


@run.job(require={"dependency_groups": ["tables"]})
def tables():
    from tabulate import tabulate

    print(tabulate([["a", 1]], headers=["k", "v"]))


@run.job
def also_plain():
    print("same requirements as hello")


@run.job(execute={"timeout": {"timeout": 3, "grace_period": 1}})
def sleeper():
    print("sleeping past my timeout", flush=True)
    time.sleep(120)


@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def counter():
    for i in range(60):
        print(f"line {i}", flush=True)
        time.sleep(0.1)


@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def napper():
    for i in range(6000):
        print(f"nap {i}", flush=True)
        time.sleep(0.1)


@run.job(require={"instance": {"size": "small"}})
def hog():
    chunks = []
    for _ in range(64):
        chunks.append(b"x" * (64 * 1024 * 1024))  # touched pages: 4 GiB in all, limit 1 GiB
    print("never printed")


@run.job(require={"dependency_groups": ["broken"]})
def unbuildable():
    print("never runs: its image cannot be built")


@run.interactive(interface="rest_api")
def tiny_api(run_context):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"tiny api in a container"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = run_context["run_args"]["port"]
    http.server.HTTPServer(("0.0.0.0", port), Handler).serve_forever()


__all__ = [
    "also_plain", "counter", "hello", "hog", "napper", "sleeper", "tables", "tiny_api",
    "unbuildable",
]
