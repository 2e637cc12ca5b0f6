"""Workspace for the stock `dlthub` CLI against dockyard (tests/e2e/test_dlthub_cli.py).

`import dlt.hub.run as run`, not `from dlt.hub import run`: the latter needs the commercial
`dlthub` package on a fresh interpreter, which the test's client environment does not have.
"""

import time

import dlt.hub.run as run


@run.job(expose={"tags": ["quick"]})
def hello():
    print("hello from dockyard", flush=True)
    print("second line", flush=True)
    run.result({"greeting": "hello"}, type="greeting")


@run.job(expose={"tags": ["quick"]})
def world():
    print("world", flush=True)


@run.job
def never():
    """Never run: the freshness upstream of `gated`."""
    print("never")


@run.job(trigger=hello.success, freshness=[never.is_fresh])
def gated():
    print("gated ran")


@run.job(trigger="0 3 * * *")
def nightly():
    print("nightly")


@run.job
def napper():
    for i in range(3000):
        print(f"nap {i}", flush=True)
        time.sleep(0.2)


__all__ = ["hello", "world", "never", "gated", "nightly", "napper"]
