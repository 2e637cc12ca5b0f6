"""Basic test workspace: quick, failing, slow and pipeline jobs."""

import os
import time

import dlt
from dlt.hub import run


@run.job(expose={"tags": ["quick"]})
def hello(greeting: str = dlt.config.value):
    """Prints its configured greeting and the profile it runs with."""
    print(f"greeting: {greeting}")
    print(f"profile: {os.environ.get('WORKSPACE__PROFILE')}")
    run.result({"greeting": greeting}, type="hello")


@run.job(trigger=hello.success, expose={"tags": ["quick"]})
def after_hello():
    print("after hello")


@run.job
def fails():
    print("about to fail")
    raise RuntimeError("boom on purpose")


@run.job(execute={"timeout": {"timeout": 3, "grace_period": 1}})
def sleeper():
    print("sleeping past my timeout", flush=True)
    time.sleep(120)


@run.job(execute={"timeout": {"timeout": 600, "grace_period": 2}})
def napper():
    for i in range(6000):
        print(f"nap {i}", flush=True)
        time.sleep(0.1)


@run.pipeline("numbers_pipeline", expose={"tags": ["load"]})
def load_numbers():
    pipeline = dlt.pipeline("numbers_pipeline", destination="duckdb", dataset_name="numbers")
    info = pipeline.run([{"n": i} for i in range(5)], table_name="numbers")
    print(info)


@run.interactive(interface="rest_api")
def tiny_api(run_context):
    """A stdlib HTTP server on the port the runtime assigns."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"tiny api ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = run_context["run_args"]["port"]
    print(f"tiny api on port {port}", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


__all__ = ["hello", "after_hello", "fails", "sleeper", "napper", "load_numbers", "tiny_api"]
